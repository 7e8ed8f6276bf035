// CPU tests of ops/optimizer.h: AdamW against a double-precision loop over several steps
// (weight decay, grad scaling, bias correction), its first-step closed form, bf16 gradients and
// copies, sum of squares, scale, casts with round-to-nearest-even, and argument errors.
#include "ops/optimizer.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::RandomFloats;

std::vector<float> Values(const Tensor& t) {
  const float* p = t.data_as<float>();
  return std::vector<float>(p, p + t.numel());
}

Tensor Bf16FromFloats(const std::vector<float>& v) {
  Tensor t = *Tensor::Empty({static_cast<int64_t>(v.size())}, DType::kBF16, CpuDevice());
  for (size_t i = 0; i < v.size(); ++i) t.data_as<bf16>()[i] = ToBf16(v[i]);
  return t;
}

struct NaiveAdamW {
  std::vector<double> w, m, v;
  void Step(const std::vector<float>& g, const AdamWParams& p) {
    const double bc1 = 1.0 - std::pow(double(p.beta1), double(p.step));
    const double bc2 = 1.0 - std::pow(double(p.beta2), double(p.step));
    for (size_t i = 0; i < w.size(); ++i) {
      const double gi = double(g[i]) * p.grad_scale;
      m[i] = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
      v[i] = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
      const double update = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + p.eps);
      w[i] -= p.lr * (update + p.weight_decay * w[i]);
    }
  }
};

TEST(AdamWTest, MatchesDoubleReferenceOverSeveralSteps) {
  const int64_t n = 1000;
  auto w0 = RandomFloats(n, 1);
  Tensor params = Tensor::FromVector(w0, {n});
  Tensor m = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
  Tensor v = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
  NaiveAdamW ref{std::vector<double>(w0.begin(), w0.end()), std::vector<double>(n, 0.0),
                 std::vector<double>(n, 0.0)};
  AdamWParams p;
  p.lr = 1e-2f;
  p.weight_decay = 0.1f;
  p.grad_scale = 0.5f;
  for (int64_t step = 1; step <= 4; ++step) {
    p.step = step;
    auto g = RandomFloats(n, 100 + step, -2.0f, 2.0f);
    Tensor grads = Tensor::FromVector(g, {n});
    ASSERT_TRUE(AdamWUpdate(params, grads, m, v, p).ok());
    ref.Step(g, p);
  }
  EXPECT_TRUE(AllClose(Values(params), ref.w, 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(Values(m), ref.m, 1e-5, 1e-7));
  EXPECT_TRUE(AllClose(Values(v), ref.v, 1e-5, 1e-7));
}

// At step 1 with zero moments, m_hat / sqrt(v_hat) = sign(g): each weight moves by lr (plus
// the decoupled decay), whatever the gradient's size.
TEST(AdamWTest, FirstStepMovesEachWeightByLr) {
  std::vector<float> w0 = {1.0f, -2.0f, 0.5f, 3.0f};
  std::vector<float> g = {1e-3f, -5.0f, 20.0f, -1e-2f};
  Tensor params = Tensor::FromVector(w0, {4});
  Tensor grads = Tensor::FromVector(g, {4});
  Tensor m = *Tensor::Zeros({4}, DType::kF32, CpuDevice());
  Tensor v = *Tensor::Zeros({4}, DType::kF32, CpuDevice());
  AdamWParams p;
  p.lr = 0.1f;
  p.weight_decay = 0.01f;
  p.eps = 0.0f;
  ASSERT_TRUE(AdamWUpdate(params, grads, m, v, p).ok());
  std::vector<double> want(4);
  for (int i = 0; i < 4; ++i) {
    want[i] = w0[i] - 0.1 * ((g[i] > 0 ? 1.0 : -1.0) + 0.01 * w0[i]);
  }
  EXPECT_TRUE(AllClose(Values(params), want, 1e-6, 1e-6));
}

TEST(AdamWTest, Bf16GradientsAndCopyOut) {
  const int64_t n = 257;
  auto w0 = RandomFloats(n, 2);
  auto g = RandomFloats(n, 3);
  Tensor grads_bf16 = Bf16FromFloats(g);
  // The reference: the same update with the gradients widened to f32 first.
  std::vector<float> g_rounded(n);
  for (int64_t i = 0; i < n; ++i) g_rounded[i] = ToFloat(grads_bf16.data_as<bf16>()[i]);

  Tensor p1 = Tensor::FromVector(w0, {n}), p2 = Tensor::FromVector(w0, {n});
  Tensor m1 = *Tensor::Zeros({n}, DType::kF32, CpuDevice()),
         m2 = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
  Tensor v1 = *Tensor::Zeros({n}, DType::kF32, CpuDevice()),
         v2 = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
  Tensor copy = *Tensor::Zeros({n}, DType::kBF16, CpuDevice());
  AdamWParams p;
  ASSERT_TRUE(AdamWUpdate(p1, grads_bf16, m1, v1, p, &copy).ok());
  ASSERT_TRUE(AdamWUpdate(p2, Tensor::FromVector(g_rounded, {n}), m2, v2, p).ok());
  EXPECT_EQ(Values(p1), Values(p2));
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(copy.data_as<bf16>()[i].bits, ToBf16(p1.data_as<float>()[i]).bits) << i;
  }
}

TEST(SumOfSquaresTest, AccumulatesIntoOut) {
  const int64_t n = 10000;  // several summation chunks
  auto x_v = RandomFloats(n, 4);
  double want = 1.5;
  for (float x : x_v) want += double(x) * x;
  Tensor x = Tensor::FromVector(x_v, {100, 100});
  Tensor out = Tensor::FromVector({1.5f}, {1});
  ASSERT_TRUE(SumOfSquaresAccumulate(x, out).ok());
  EXPECT_NEAR(out.data_as<float>()[0], want, 1e-6 * want);

  Tensor xb = Bf16FromFloats(x_v);
  double want_b = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double xi = ToFloat(xb.data_as<bf16>()[i]);
    want_b += xi * xi;
  }
  Tensor out_b = *Tensor::Zeros({1}, DType::kF32, CpuDevice());
  ASSERT_TRUE(SumOfSquaresAccumulate(xb, out_b).ok());
  EXPECT_NEAR(out_b.data_as<float>()[0], want_b, 1e-6 * want_b);
}

TEST(ScaleTest, ScalesInPlace) {
  Tensor x = Tensor::FromVector({1.0f, -2.0f, 3.5f}, {3});
  ASSERT_TRUE(Scale(x, -0.5f).ok());
  EXPECT_EQ(Values(x), (std::vector<float>{-0.5f, 1.0f, -1.75f}));
  Tensor xb = Bf16FromFloats({1.0f, -3.0f});
  ASSERT_TRUE(Scale(xb, 0.25f).ok());
  EXPECT_EQ(ToFloat(xb.data_as<bf16>()[0]), 0.25f);
  EXPECT_EQ(ToFloat(xb.data_as<bf16>()[1]), -0.75f);
}

TEST(CastTest, RoundsToNearestEvenAndRoundTrips) {
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  std::vector<float> src_v = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -2.5f, 65504.0f};
  Tensor src = Tensor::FromVector(src_v, {4});
  Tensor b = *Tensor::Zeros({4}, DType::kBF16, CpuDevice());
  ASSERT_TRUE(Cast(src, b).ok());
  EXPECT_EQ(ToFloat(b.data_as<bf16>()[0]), 1.0f);
  EXPECT_EQ(ToFloat(b.data_as<bf16>()[1]), 1.0f + 1.0f / 64);
  EXPECT_EQ(ToFloat(b.data_as<bf16>()[2]), -2.5f);

  Tensor h = *Tensor::Zeros({4}, DType::kF16, CpuDevice());
  ASSERT_TRUE(Cast(src, h).ok());
  Tensor back = *Tensor::Zeros({2, 2}, DType::kF32, CpuDevice());  // flat: shapes may differ
  ASSERT_TRUE(Cast(h, back).ok());
  // f16 has 10 mantissa bits, so 1 + 2^-8 and 1 + 3 * 2^-8 are exact; 65504 is f16's max.
  EXPECT_EQ(Values(back), src_v);

  // bf16 -> f16 goes through fp32.
  Tensor h2 = *Tensor::Zeros({4}, DType::kF16, CpuDevice());
  ASSERT_TRUE(Cast(b, h2).ok());
  EXPECT_EQ(ToFloat(h2.data_as<f16>()[1]), 1.0f + 1.0f / 64);
}

TEST(OptimizerErrorsTest, NameArgumentAndProblem) {
  Tensor w = *Tensor::Zeros({8}, DType::kF32, CpuDevice());
  Tensor g = *Tensor::Zeros({2, 4}, DType::kF32, CpuDevice());
  Tensor short_m = *Tensor::Zeros({7}, DType::kF32, CpuDevice());
  Tensor v = *Tensor::Zeros({8}, DType::kF32, CpuDevice());
  AdamWParams p;
  absl::Status s = AdamWUpdate(w, g, short_m, v, p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("m has shape [7] (7 elements); expected 8 elements"),
            absl::string_view::npos)
      << s;

  Tensor vb = *Tensor::Zeros({8}, DType::kBF16, CpuDevice());
  s = AdamWUpdate(w, g, v, vb, p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("v must be f32"), absl::string_view::npos) << s;

  p.step = 0;
  s = AdamWUpdate(w, g, v, v, p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("step = 0"), absl::string_view::npos) << s;

  Tensor out2 = *Tensor::Zeros({2}, DType::kF32, CpuDevice());
  s = SumOfSquaresAccumulate(w, out2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("out has shape [2]"), absl::string_view::npos) << s;

  Tensor ints = *Tensor::Zeros({8}, DType::kI32, CpuDevice());
  s = Cast(w, ints);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dst must be f32 or bf16 or f16, got i32[8]"), absl::string_view::npos)
      << s;
}

}  // namespace
}  // namespace loom::ops
