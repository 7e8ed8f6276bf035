// CUDA vs CPU for ops/cross_entropy.h (label gpu; skips without a device).
// Logits are rounded to the device dtype and the CPU reference runs on those exact values.
// Losses are fp32 on both sides: rtol 1e-5 / atol 1e-5. dlogits: f32 rtol 1e-4 / atol 1e-7,
// bf16 rtol 1e-2 / atol 1e-5 (one bf16 rounding; dloss is 1 so dlogits are probabilities).
// V = 1024 and 50304 take the 128-bit path, V = 1003 the scalar one; padded columns,
// ignored targets, large logits and dlogits written over the logits are all covered.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cross_entropy.h"
#include "tests/ops/gpu_test_util.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Gpu;
using ::loom::testing::HostValues;
using ::loom::testing::MakeTensor;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

std::vector<int32_t> Targets(int64_t n, int64_t valid, uint64_t seed) {
  const auto u = RandomDoubles(n, seed, 0.0, 1.0);
  std::vector<int32_t> t(n);
  for (int64_t r = 0; r < n; ++r) t[r] = static_cast<int32_t>(u[r] * valid);
  t[1] = -1;
  t[n - 1] = -100;
  t[0] = static_cast<int32_t>(valid - 1);
  return t;
}

Tensor GpuTargets(const std::vector<int32_t>& t) {
  Tensor c = Tensor::FromVectorI32(t, {static_cast<int64_t>(t.size())});
  return *c.To(Gpu());
}

class CrossEntropyGpuTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  double GradRtol() const { return dt() == DType::kF32 ? 1e-4 : 1e-2; }
  double GradAtol() const { return dt() == DType::kF32 ? 1e-7 : 1e-5; }
};

TEST_P(CrossEntropyGpuTest, FusedMatchesCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  struct Case {
    int64_t n, v, valid;
    float scale;
  };
  for (const Case& c :
       {Case{16, 1024, 1019, 4.0f}, Case{9, 1003, 1003, 30.0f}, Case{4, 50304, 50257, 8.0f}}) {
    SCOPED_TRACE(::testing::Message() << "N " << c.n << " V " << c.v << " valid " << c.valid);
    const Shape s{c.n, c.v};
    const auto x = RoundTo(RandomFloats(s.numel(), 1, -c.scale, c.scale), dt());
    const auto tg = Targets(c.n, c.valid, 2);
    const int64_t vv = c.valid == c.v ? -1 : c.valid;
    Tensor c_losses = *Tensor::Zeros({c.n}, DType::kF32, CpuDevice());
    Tensor c_grad = *Tensor::Zeros(s, DType::kF32, CpuDevice());
    ASSERT_TRUE(CrossEntropyForwardBackward(Tensor::FromVector(x, s),
                                            Tensor::FromVectorI32(tg, {c.n}), c_losses, &c_grad,
                                            1.0f, vv)
                    .ok());
    Tensor g_targets = GpuTargets(tg);
    Tensor g_logits = MakeTensor(x, s, dt(), Gpu());
    Tensor g_losses = MakeTensor(std::vector<float>(c.n, NAN), {c.n}, DType::kF32, Gpu());
    Tensor g_grad = MakeTensor(std::vector<float>(s.numel(), NAN), s, dt(), Gpu());
    ASSERT_TRUE(CrossEntropyForwardBackward(g_logits, g_targets, g_losses, &g_grad, 1.0f, vv).ok());
    EXPECT_TRUE(AllClose(HostValues(g_losses), HostValues(c_losses), 1e-5, 1e-5));
    const auto grad = HostValues(g_grad);
    EXPECT_TRUE(AllClose(grad, HostValues(c_grad), GradRtol(), GradAtol()));
    for (int64_t r = 0; r < c.n; ++r) {
      for (int64_t j = 0; j < c.v; ++j) {
        if (tg[r] < 0 || j >= c.valid) {
          ASSERT_EQ(grad[r * c.v + j], 0.0f) << r << "," << j;
        }
      }
    }
    // Loss only, and dlogits written over the logits: same numbers.
    Tensor g_losses2 = MakeTensor(std::vector<float>(c.n), {c.n}, DType::kF32, Gpu());
    ASSERT_TRUE(
        CrossEntropyForwardBackward(g_logits, g_targets, g_losses2, nullptr, 1.0f, vv).ok());
    EXPECT_EQ(HostValues(g_losses2), HostValues(g_losses));
    ASSERT_TRUE(
        CrossEntropyForwardBackward(g_logits, g_targets, g_losses2, &g_logits, 1.0f, vv).ok());
    EXPECT_EQ(HostValues(g_losses2), HostValues(g_losses));
    EXPECT_EQ(HostValues(g_logits), grad);
  }
}

TEST_P(CrossEntropyGpuTest, VocabParallelPiecesMatchCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  // Two slices of 520 columns, the last 30 of the second one padding.
  const int64_t n = 12, vs = 520, valid_total = 2 * vs - 30;
  const auto full = RoundTo(RandomFloats(n * 2 * vs, 3, -6.0f, 6.0f), dt());
  const auto tg = Targets(n, valid_total, 4);
  Tensor g_targets = GpuTargets(tg);
  Tensor c_targets = Tensor::FromVectorI32(tg, {n});
  std::vector<std::vector<float>> slices(2, std::vector<float>(n * vs));
  for (int s = 0; s < 2; ++s) {
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < vs; ++j) slices[s][r * vs + j] = full[r * 2 * vs + s * vs + j];
    }
  }
  const int64_t valid[2] = {-1, valid_total - vs};
  auto zeros_cpu = [&] { return *Tensor::Zeros({n}, DType::kF32, CpuDevice()); };
  auto zeros_gpu = [&] { return MakeTensor(std::vector<float>(n), {n}, DType::kF32, Gpu()); };
  // Global max from the CPU pieces (the all-reduce's result), used by both backends.
  std::vector<float> gmax(n, -INFINITY), gsum(n, 0.0f), gtl(n, 0.0f);
  for (int s = 0; s < 2; ++s) {
    Tensor c_max = zeros_cpu(), g_max = zeros_gpu();
    ASSERT_TRUE(LogitsRowMax(Tensor::FromVector(slices[s], {n, vs}), c_max, valid[s]).ok());
    ASSERT_TRUE(LogitsRowMax(MakeTensor(slices[s], {n, vs}, dt(), Gpu()), g_max, valid[s]).ok());
    EXPECT_EQ(HostValues(g_max), HostValues(c_max));  // a max is exact
    const auto m = HostValues(c_max);
    for (int64_t r = 0; r < n; ++r) gmax[r] = std::max(gmax[r], m[r]);
  }
  for (int s = 0; s < 2; ++s) {
    Tensor c_sum = zeros_cpu(), g_sum = zeros_gpu(), c_tl = zeros_cpu(), g_tl = zeros_gpu();
    Tensor g_slice = MakeTensor(slices[s], {n, vs}, dt(), Gpu());
    Tensor c_slice = Tensor::FromVector(slices[s], {n, vs});
    ASSERT_TRUE(LogitsSumExp(c_slice, Tensor::FromVector(gmax, {n}), c_sum, valid[s]).ok());
    ASSERT_TRUE(
        LogitsSumExp(g_slice, MakeTensor(gmax, {n}, DType::kF32, Gpu()), g_sum, valid[s]).ok());
    EXPECT_TRUE(AllClose(HostValues(g_sum), HostValues(c_sum), 1e-5, 1e-6));
    ASSERT_TRUE(TargetLogit(c_slice, c_targets, s * vs, c_tl).ok());
    ASSERT_TRUE(TargetLogit(g_slice, g_targets, s * vs, g_tl).ok());
    EXPECT_EQ(HostValues(g_tl), HostValues(c_tl));  // a copy is exact
    const auto sv = HostValues(c_sum), tv = HostValues(c_tl);
    for (int64_t r = 0; r < n; ++r) {
      gsum[r] += sv[r];
      gtl[r] += tv[r];
    }
  }
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(::testing::Message() << "slice " << s);
    Tensor c_losses = zeros_cpu(), g_losses = zeros_gpu();
    Tensor c_grad = *Tensor::Zeros({n, vs}, DType::kF32, CpuDevice());
    Tensor g_grad = MakeTensor(slices[s], {n, vs}, dt(), Gpu());  // written in place
    ASSERT_TRUE(VocabParallelCrossEntropyFinish(
                    Tensor::FromVector(slices[s], {n, vs}), c_targets, s * vs,
                    Tensor::FromVector(gmax, {n}), Tensor::FromVector(gsum, {n}),
                    Tensor::FromVector(gtl, {n}), c_losses, &c_grad, 0.5f, valid[s])
                    .ok());
    ASSERT_TRUE(VocabParallelCrossEntropyFinish(
                    g_grad, g_targets, s * vs, MakeTensor(gmax, {n}, DType::kF32, Gpu()),
                    MakeTensor(gsum, {n}, DType::kF32, Gpu()),
                    MakeTensor(gtl, {n}, DType::kF32, Gpu()), g_losses, &g_grad, 0.5f, valid[s])
                    .ok());
    EXPECT_TRUE(AllClose(HostValues(g_losses), HostValues(c_losses), 1e-5, 1e-5));
    EXPECT_TRUE(AllClose(HostValues(g_grad), HostValues(c_grad), GradRtol(), GradAtol()));
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, CrossEntropyGpuTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace loom::ops
