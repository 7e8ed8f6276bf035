// CUDA vs CPU for ops/optimizer.h (label gpu; skips without a device).
// AdamW runs the same fp32 formula on both sides (only FMA contraction may differ): rtol 1e-5,
// atol 1e-7 after several steps. Sum of squares: GPU fp32 tree vs CPU double, rtol 1e-5, and
// bitwise reproducible. Scale and Cast round once, to nearest even, on both: exact.
#include <vector>

#include "gtest/gtest.h"
#include "ops/optimizer.h"
#include "tests/ops/gpu_test_util.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Gpu;
using ::loom::testing::HostValues;
using ::loom::testing::MakeTensor;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

class AdamWGpuTest : public ::testing::TestWithParam<std::pair<DType, bool>> {};

TEST_P(AdamWGpuTest, MatchesCpuOverSeveralSteps) {
  LOOM_SKIP_WITHOUT_CUDA();
  const auto [grad_dt, with_copy] = GetParam();
  const int64_t n = 4099;  // not a multiple of the vector width
  const auto w0 = RandomFloats(n, 1);
  Tensor w = MakeTensor(w0, {n}, DType::kF32, Gpu());
  Tensor m = *Tensor::Zeros({n}, DType::kF32, Gpu());
  Tensor v = *Tensor::Zeros({n}, DType::kF32, Gpu());
  Tensor copy = *Tensor::Zeros({n}, DType::kBF16, Gpu());
  Tensor c_w = Tensor::FromVector(w0, {n});
  Tensor c_m = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
  Tensor c_v = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
  AdamWParams p;
  p.lr = 1e-2f;
  p.weight_decay = 0.1f;
  p.grad_scale = 0.7f;
  for (int64_t step = 1; step <= 3; ++step) {
    p.step = step;
    const auto g = RoundTo(RandomFloats(n, 10 + step, -2.0f, 2.0f), grad_dt);
    ASSERT_TRUE(
        AdamWUpdate(w, MakeTensor(g, {n}, grad_dt, Gpu()), m, v, p, with_copy ? &copy : nullptr)
            .ok());
    ASSERT_TRUE(AdamWUpdate(c_w, Tensor::FromVector(g, {n}), c_m, c_v, p).ok());
  }
  const auto w_gpu = HostValues(w);
  EXPECT_TRUE(AllClose(w_gpu, HostValues(c_w), 1e-5, 1e-7));
  EXPECT_TRUE(AllClose(HostValues(m), HostValues(c_m), 1e-5, 1e-7));
  EXPECT_TRUE(AllClose(HostValues(v), HostValues(c_v), 1e-5, 1e-7));
  if (with_copy) {
    EXPECT_EQ(HostValues(copy), RoundTo(w_gpu, DType::kBF16));
  }
}

INSTANTIATE_TEST_SUITE_P(GradTypes, AdamWGpuTest,
                         ::testing::Values(std::pair{DType::kF32, false},
                                           std::pair{DType::kF32, true},
                                           std::pair{DType::kBF16, true}));

TEST(SumOfSquaresGpuTest, MatchesCpuAndIsReproducible) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t n : {int64_t{1}, int64_t{1001}, int64_t{3000001}}) {
      const auto x_v = RoundTo(RandomFloats(n, 20), dt);
      Tensor x = MakeTensor(x_v, {n}, dt, Gpu());
      Tensor out1 = MakeTensor({0.25f}, {1}, DType::kF32, Gpu());
      Tensor out2 = MakeTensor({0.25f}, {1}, DType::kF32, Gpu());
      ASSERT_TRUE(SumOfSquaresAccumulate(x, out1).ok());
      ASSERT_TRUE(SumOfSquaresAccumulate(x, out2).ok());
      Tensor c_out = Tensor::FromVector({0.25f}, {1});
      ASSERT_TRUE(SumOfSquaresAccumulate(Tensor::FromVector(x_v, {n}), c_out).ok());
      EXPECT_EQ(HostValues(out1), HostValues(out2));
      EXPECT_TRUE(AllClose(HostValues(out1), HostValues(c_out), 1e-5, 0.0))
          << DTypeName(dt) << " n=" << n;
    }
  }
}

TEST(ScaleCastGpuTest, MatchCpuExactly) {
  LOOM_SKIP_WITHOUT_CUDA();
  const int64_t n = 1027;
  auto v = RandomFloats(n, 30, -70000.0f, 70000.0f);  // beyond f16 range: inf on both sides
  v[0] = 1.0f + 1.0f / 256;                           // a bf16 tie
  for (DType src : {DType::kF32, DType::kBF16, DType::kF16}) {
    const auto src_v = RoundTo(v, src);
    for (DType dst : {DType::kF32, DType::kBF16, DType::kF16}) {
      Tensor g_src = MakeTensor(src_v, {n}, src, Gpu());
      Tensor g_dst = *Tensor::Zeros({n}, dst, Gpu());
      ASSERT_TRUE(Cast(g_src, g_dst).ok());
      Tensor c_dst = *Tensor::Zeros({n}, dst, CpuDevice());
      ASSERT_TRUE(Cast(Tensor::FromVector(src_v, {n}), c_dst).ok());
      EXPECT_EQ(HostValues(g_dst), HostValues(c_dst)) << DTypeName(src) << "->" << DTypeName(dst);
    }
    Tensor g = MakeTensor(src_v, {n}, src, Gpu());
    Tensor c = MakeTensor(src_v, {n}, src, CpuDevice());
    ASSERT_TRUE(Scale(g, 0.3f).ok());
    ASSERT_TRUE(Scale(c, 0.3f).ok());
    EXPECT_EQ(HostValues(g), HostValues(c)) << DTypeName(src);
  }
}

}  // namespace
}  // namespace loom::ops
