// CPU tests of ops/linear.h: forward and backward against naive double-precision loops, a
// finite-difference gradient check of the real CPU kernels run in double, the general GEMM in
// all transpose combinations, and the argument errors.
#include "ops/linear.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/activation.h"
#include "ops/cpu/linear.h"
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

// out[r, o] = sum_i inp[r, i] * w[o, i] + b[o], in double.
std::vector<double> NaiveLinear(const std::vector<float>& inp, const std::vector<float>& w,
                                const std::vector<float>* b, int64_t n, int64_t ic, int64_t oc) {
  std::vector<double> out(n * oc);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t o = 0; o < oc; ++o) {
      double s = b != nullptr ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < ic; ++i) s += double(inp[r * ic + i]) * w[o * ic + i];
      out[r * oc + o] = s;
    }
  }
  return out;
}

double NaiveGelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST(LinearForwardTest, MatchesNaiveWithAndWithoutBias) {
  const int64_t n = 7, ic = 13, oc = 5;
  auto inp_v = RandomFloats(n * ic, 1);
  auto w_v = RandomFloats(oc * ic, 2);
  auto b_v = RandomFloats(oc, 3);
  // Leading dims [1, 7] are flattened into N.
  Tensor inp = Tensor::FromVector(inp_v, {1, n, ic});
  Tensor w = Tensor::FromVector(w_v, {oc, ic});
  Tensor b = Tensor::FromVector(b_v, {oc});
  Tensor out = *Tensor::Zeros({1, n, oc}, DType::kF32, CpuDevice());

  ASSERT_TRUE(LinearForward(inp, w, &b, out).ok());
  EXPECT_TRUE(AllClose(Values(out), NaiveLinear(inp_v, w_v, &b_v, n, ic, oc), 1e-5, 1e-6));

  ASSERT_TRUE(LinearForward(inp, w, nullptr, out).ok());
  EXPECT_TRUE(AllClose(Values(out), NaiveLinear(inp_v, w_v, nullptr, n, ic, oc), 1e-5, 1e-6));
}

TEST(LinearForwardTest, PreGeluReceivesTheAffineValueAndOutItsGelu) {
  const int64_t n = 4, ic = 9, oc = 6;
  auto inp_v = RandomFloats(n * ic, 4);
  auto w_v = RandomFloats(oc * ic, 5);
  auto b_v = RandomFloats(oc, 6);
  Tensor inp = Tensor::FromVector(inp_v, {n, ic});
  Tensor w = Tensor::FromVector(w_v, {oc, ic});
  Tensor b = Tensor::FromVector(b_v, {oc});
  Tensor out = *Tensor::Zeros({n, oc}, DType::kF32, CpuDevice());
  Tensor pre = *Tensor::Zeros({n, oc}, DType::kF32, CpuDevice());
  ASSERT_TRUE(LinearForward(inp, w, &b, out, &pre).ok());
  std::vector<double> want_pre = NaiveLinear(inp_v, w_v, &b_v, n, ic, oc);
  std::vector<double> want_out(want_pre.size());
  for (size_t i = 0; i < want_pre.size(); ++i) want_out[i] = NaiveGelu(want_pre[i]);
  EXPECT_TRUE(AllClose(Values(pre), want_pre, 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(Values(out), want_out, 1e-5, 1e-6));
}

TEST(LinearBackwardTest, MatchesNaiveAndAccumulatesParameterGradients) {
  const int64_t n = 6, ic = 5, oc = 7;
  auto inp_v = RandomFloats(n * ic, 7);
  auto w_v = RandomFloats(oc * ic, 8);
  auto dout_v = RandomFloats(n * oc, 9);
  auto dw0 = RandomFloats(oc * ic, 10);  // earlier micro-batches' gradients
  auto db0 = RandomFloats(oc, 11);
  Tensor inp = Tensor::FromVector(inp_v, {n, ic});
  Tensor w = Tensor::FromVector(w_v, {oc, ic});
  Tensor dout = Tensor::FromVector(dout_v, {n, oc});
  Tensor dinp = Tensor::FromVector(RandomFloats(n * ic, 12), {n, ic});  // overwritten
  Tensor dw = Tensor::FromVector(dw0, {oc, ic});
  Tensor db = Tensor::FromVector(db0, {oc});
  ASSERT_TRUE(LinearBackward(dout, inp, w, &dinp, dw, &db).ok());

  std::vector<double> want_dinp(n * ic, 0.0), want_dw(oc * ic), want_db(oc);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < ic; ++i) {
      for (int64_t o = 0; o < oc; ++o) {
        want_dinp[r * ic + i] += double(dout_v[r * oc + o]) * w_v[o * ic + i];
      }
    }
  }
  for (int64_t o = 0; o < oc; ++o) {
    want_db[o] = db0[o];
    for (int64_t r = 0; r < n; ++r) want_db[o] += dout_v[r * oc + o];
    for (int64_t i = 0; i < ic; ++i) {
      double s = dw0[o * ic + i];
      for (int64_t r = 0; r < n; ++r) s += double(dout_v[r * oc + o]) * inp_v[r * ic + i];
      want_dw[o * ic + i] = s;
    }
  }
  EXPECT_TRUE(AllClose(Values(dinp), want_dinp, 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(Values(dw), want_dw, 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(Values(db), want_db, 1e-5, 1e-6));

  // dinp and dbias are optional.
  ASSERT_TRUE(LinearBackward(dout, inp, w, nullptr, dw, nullptr).ok());
}

// The real CPU kernels in double: L = <Linear(inp), w_out>, checked for inp, weight and bias.
TEST(LinearGradCheck, MatchesFiniteDifferences) {
  const int64_t n = 3, ic = 4, oc = 5;
  std::vector<double> inp = RandomDoubles(n * ic, 20);
  std::vector<double> weight = RandomDoubles(oc * ic, 21);
  std::vector<double> bias = RandomDoubles(oc, 22);
  const std::vector<double> probe = RandomDoubles(n * oc, 23);
  auto loss = [&]() {
    std::vector<double> out(n * oc);
    cpu::LinearForward<double>(inp.data(), weight.data(), bias.data(), out.data(), nullptr, n, ic,
                               oc);
    return Dot(out, probe);
  };
  std::vector<double> dinp(n * ic), dweight(oc * ic, 0.0), dbias(oc, 0.0);
  cpu::LinearBackward<double>(probe.data(), inp.data(), weight.data(), dinp.data(), dweight.data(),
                              dbias.data(), n, ic, oc);
  EXPECT_TRUE(GradientMatches(loss, &inp, dinp));
  EXPECT_TRUE(GradientMatches(loss, &weight, dweight));
  EXPECT_TRUE(GradientMatches(loss, &bias, dbias));
}

// The fused GeLU path composes with GeluBackward: L = <GeLU(Linear(inp)), w_out>.
TEST(LinearGradCheck, GeluPathMatchesFiniteDifferences) {
  const int64_t n = 2, ic = 3, oc = 4;
  std::vector<double> inp = RandomDoubles(n * ic, 30, -2.0, 2.0);
  std::vector<double> weight = RandomDoubles(oc * ic, 31);
  std::vector<double> bias = RandomDoubles(oc, 32);
  const std::vector<double> probe = RandomDoubles(n * oc, 33);
  std::vector<double> pre(n * oc), out(n * oc);
  auto loss = [&]() {
    cpu::LinearForward<double>(inp.data(), weight.data(), bias.data(), out.data(), pre.data(), n,
                               ic, oc);
    return Dot(out, probe);
  };
  loss();
  std::vector<double> dpre(n * oc), dinp(n * ic), dweight(oc * ic, 0.0), dbias(oc, 0.0);
  cpu::GeluBackward<double>(probe.data(), pre.data(), dpre.data(), n * oc);
  cpu::LinearBackward<double>(dpre.data(), inp.data(), weight.data(), dinp.data(), dweight.data(),
                              dbias.data(), n, ic, oc);
  EXPECT_TRUE(GradientMatches(loss, &inp, dinp));
  EXPECT_TRUE(GradientMatches(loss, &weight, dweight));
  EXPECT_TRUE(GradientMatches(loss, &bias, dbias));
}

class GemmTest : public ::testing::TestWithParam<std::pair<bool, bool>> {};

TEST_P(GemmTest, MatchesNaiveForEveryTransposeCombination) {
  const auto [trans_a, trans_b] = GetParam();
  const int64_t m = 5, n = 3, k = 4;
  auto a_v = RandomFloats(m * k, 40);
  auto b_v = RandomFloats(k * n, 41);
  auto c_v = RandomFloats(m * n, 42);
  Tensor a = Tensor::FromVector(a_v, trans_a ? Shape{k, m} : Shape{m, k});
  Tensor b = Tensor::FromVector(b_v, trans_b ? Shape{n, k} : Shape{k, n});
  Tensor c = Tensor::FromVector(c_v, {m, n});
  const float alpha = 0.5f, beta = -2.0f;
  ASSERT_TRUE(Gemm(a, trans_a, b, trans_b, c, alpha, beta).ok());
  std::vector<double> want(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = trans_a ? a_v[p * m + i] : a_v[i * k + p];
        const double bv = trans_b ? b_v[j * k + p] : b_v[p * n + j];
        s += av * bv;
      }
      want[i * n + j] = alpha * s + beta * double(c_v[i * n + j]);
    }
  }
  EXPECT_TRUE(AllClose(Values(c), want, 1e-5, 1e-6));
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, GemmTest,
                         ::testing::Values(std::pair{false, false}, std::pair{false, true},
                                           std::pair{true, false}, std::pair{true, true}));

TEST(LinearErrorsTest, ShapeMismatchesNameTheArgumentAndShapes) {
  Tensor inp = *Tensor::Zeros({4, 6}, DType::kF32, CpuDevice());
  Tensor w = *Tensor::Zeros({8, 5}, DType::kF32, CpuDevice());
  Tensor out = *Tensor::Zeros({4, 8}, DType::kF32, CpuDevice());
  absl::Status s = LinearForward(inp, w, nullptr, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("weight has shape [8, 5]"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("[OC, 6]"), absl::string_view::npos) << s;

  Tensor w_ok = *Tensor::Zeros({8, 6}, DType::kF32, CpuDevice());
  Tensor bad_out = *Tensor::Zeros({4, 7}, DType::kF32, CpuDevice());
  s = LinearForward(inp, w_ok, nullptr, bad_out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("out has shape [4, 7]; expected [4, 8]"), absl::string_view::npos)
      << s;

  Tensor bad_bias = *Tensor::Zeros({7}, DType::kF32, CpuDevice());
  s = LinearForward(inp, w_ok, &bad_bias, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bias has shape [7]; expected [8]"), absl::string_view::npos) << s;

  Tensor dw_bad = *Tensor::Zeros({6, 8}, DType::kF32, CpuDevice());
  s = LinearBackward(out, inp, w_ok, nullptr, dw_bad, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dweight has shape [6, 8]"), absl::string_view::npos) << s;

  Tensor c = *Tensor::Zeros({4, 4}, DType::kF32, CpuDevice());
  s = Gemm(inp, false, w_ok, false, c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("inner dimensions differ"), absl::string_view::npos) << s;
}

TEST(LinearErrorsTest, CpuRejectsNonF32) {
  Tensor inp = *Tensor::Zeros({4, 6}, DType::kBF16, CpuDevice());
  Tensor w = *Tensor::Zeros({8, 6}, DType::kBF16, CpuDevice());
  Tensor out = *Tensor::Zeros({4, 8}, DType::kBF16, CpuDevice());
  absl::Status s = LinearForward(inp, w, nullptr, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("inp must be f32 on the CPU"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace loom::ops
