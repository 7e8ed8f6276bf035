// CPU tests of ops/activation.h: GeLU, SwiGLU and Add against naive double-precision
// formulas, finite-difference gradient checks of the real CPU kernels in double, and errors.
#include "ops/activation.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/activation.h"
#include "runtime/tensor.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Dot;
using ::loom::testing::GradientMatches;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;

std::vector<float> Values(const Tensor& t) {
  const float* p = t.data_as<float>();
  return std::vector<float>(p, p + t.numel());
}

double NaiveGelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * std::pow(x, 3))));
}
double NaiveSilu(double x) { return x / (1.0 + std::exp(-x)); }

TEST(GeluTest, ForwardMatchesGpt2Formula) {
  auto x_v = RandomFloats(37, 1, -5.0f, 5.0f);
  x_v.push_back(0.0f);
  x_v.push_back(-20.0f);
  x_v.push_back(20.0f);
  const int64_t n = x_v.size();
  Tensor x = Tensor::FromVector(x_v, {n});
  Tensor out = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
  ASSERT_TRUE(GeluForward(x, out).ok());
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = NaiveGelu(x_v[i]);
  EXPECT_TRUE(AllClose(Values(out), want, 1e-6, 1e-7));
}

TEST(GeluTest, BackwardMatchesFiniteDifferencesInDouble) {
  std::vector<double> x = RandomDoubles(29, 2, -4.0, 4.0);
  const std::vector<double> probe = RandomDoubles(29, 3);
  auto loss = [&]() {
    std::vector<double> out(x.size());
    cpu::GeluForward<double>(x.data(), out.data(), x.size());
    return Dot(out, probe);
  };
  std::vector<double> dx(x.size());
  cpu::GeluBackward<double>(probe.data(), x.data(), dx.data(), x.size());
  EXPECT_TRUE(GradientMatches(loss, &x, dx));
}

TEST(GeluTest, FloatBackwardAgreesWithDoubleKernel) {
  auto x_v = RandomFloats(64, 4, -4.0f, 4.0f);
  auto d_v = RandomFloats(64, 5);
  Tensor x = Tensor::FromVector(x_v, {8, 8});
  Tensor dout = Tensor::FromVector(d_v, {8, 8});
  Tensor dx = *Tensor::Zeros({8, 8}, DType::kF32, CpuDevice());
  ASSERT_TRUE(GeluBackward(dout, x, dx).ok());
  std::vector<double> want(64);
  for (int i = 0; i < 64; ++i) want[i] = d_v[i] * cpu::GeluDerivative<double>(x_v[i]);
  EXPECT_TRUE(AllClose(Values(dx), want, 1e-5, 1e-6));
}

TEST(SwiGLUTest, ForwardIsSiluOfGateTimesUp) {
  const int64_t n = 3, h = 5;
  auto inp_v = RandomFloats(n * 2 * h, 6, -3.0f, 3.0f);
  Tensor inp = Tensor::FromVector(inp_v, {n, 2 * h});
  Tensor out = *Tensor::Zeros({n, h}, DType::kF32, CpuDevice());
  ASSERT_TRUE(SwiGLUForward(inp, out).ok());
  std::vector<double> want(n * h);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < h; ++j) {
      want[r * h + j] = NaiveSilu(inp_v[r * 2 * h + j]) * inp_v[r * 2 * h + h + j];
    }
  }
  EXPECT_TRUE(AllClose(Values(out), want, 1e-6, 1e-7));
}

TEST(SwiGLUTest, BackwardMatchesFiniteDifferencesInDouble) {
  const int64_t n = 3, h = 4;
  std::vector<double> inp = RandomDoubles(n * 2 * h, 7, -3.0, 3.0);
  const std::vector<double> probe = RandomDoubles(n * h, 8);
  auto loss = [&]() {
    std::vector<double> out(n * h);
    cpu::SwiGLUForward<double>(inp.data(), out.data(), n, h);
    return Dot(out, probe);
  };
  std::vector<double> dinp(n * 2 * h);
  cpu::SwiGLUBackward<double>(probe.data(), inp.data(), dinp.data(), n, h);
  EXPECT_TRUE(GradientMatches(loss, &inp, dinp));
}

TEST(SwiGLUTest, FloatBackwardAgreesWithDoubleKernel) {
  const int64_t n = 4, h = 6;
  auto inp_v = RandomFloats(n * 2 * h, 9, -3.0f, 3.0f);
  auto d_v = RandomFloats(n * h, 10);
  Tensor inp = Tensor::FromVector(inp_v, {n, 2 * h});
  Tensor dout = Tensor::FromVector(d_v, {n, h});
  Tensor dinp = *Tensor::Zeros({n, 2 * h}, DType::kF32, CpuDevice());
  ASSERT_TRUE(SwiGLUBackward(dout, inp, dinp).ok());
  std::vector<double> inp_d(inp_v.begin(), inp_v.end()), d_d(d_v.begin(), d_v.end());
  std::vector<double> want(n * 2 * h);
  cpu::SwiGLUBackward<double>(d_d.data(), inp_d.data(), want.data(), n, h);
  EXPECT_TRUE(AllClose(Values(dinp), want, 1e-5, 1e-6));
}

TEST(AddTest, AddsAndMayAliasAnInput) {
  auto a_v = RandomFloats(10, 11);
  auto b_v = RandomFloats(10, 12);
  Tensor a = Tensor::FromVector(a_v, {2, 5});
  Tensor b = Tensor::FromVector(b_v, {2, 5});
  ASSERT_TRUE(Add(a, b, a).ok());  // in place
  std::vector<double> want(10);
  for (int i = 0; i < 10; ++i) want[i] = double(a_v[i]) + b_v[i];
  EXPECT_TRUE(AllClose(Values(a), want, 1e-7, 0.0));
}

TEST(ActivationErrorsTest, NameArgumentAndShapes) {
  Tensor x = *Tensor::Zeros({4, 6}, DType::kF32, CpuDevice());
  Tensor y = *Tensor::Zeros({4, 5}, DType::kF32, CpuDevice());
  absl::Status s = GeluForward(x, y);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("out has shape [4, 5]; expected [4, 6]"), absl::string_view::npos)
      << s;

  Tensor odd = *Tensor::Zeros({4, 5}, DType::kF32, CpuDevice());
  Tensor half = *Tensor::Zeros({4, 2}, DType::kF32, CpuDevice());
  s = SwiGLUForward(odd, half);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("even last dimension"), absl::string_view::npos) << s;

  s = SwiGLUForward(x, y);  // out must be [4, 3]
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("out has shape [4, 5]; expected [4, 3]"), absl::string_view::npos)
      << s;

  Tensor xb = *Tensor::Zeros({4, 6}, DType::kBF16, CpuDevice());
  s = Add(x, xb, x);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("b is bf16[4, 6]; expected dtype f32"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace loom::ops
