// CUDA vs CPU for ops/norm.h (label gpu; skips without a device).
// Inputs are rounded to the device dtype first and the CPU reference runs on those exact
// values, so only the kernels' arithmetic and the output rounding differ:
//   f32 activations: outputs rtol 1e-5 / atol 1e-5 (fp32 sums in another order);
//   bf16 activations: outputs rtol 1e-2 / atol 1e-2 (one bf16 rounding, 2^-9 relative);
//   statistics (always fp32, from identical inputs): rtol 1e-5 / atol 1e-5;
//   parameter gradients (sums over all rows): rtol 1e-4 / atol 1e-4 (f32 grads), 1e-2 (bf16).
// C = 768 and 256 take the 128-bit path, C = 67 the scalar one, as does a buffer offset by
// one element; weights are f32 or bf16 independently of the activations.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/norm.h"
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

struct NormCase {
  DType act;
  DType param;  // weight/bias and their gradients
  int64_t c;
  int64_t offset;  // elements skipped at the start of every activation buffer (1 = unaligned)
};

std::string Name(const ::testing::TestParamInfo<NormCase>& info) {
  const NormCase& p = info.param;
  return std::string(DTypeName(p.act)) + "_w" + std::string(DTypeName(p.param)) + "_C" +
         std::to_string(p.c) + (p.offset ? "_unaligned" : "");
}

class NormGpuTest : public ::testing::TestWithParam<NormCase> {
 protected:
  DType act() const { return GetParam().act; }
  DType param() const { return GetParam().param; }
  double Rtol() const { return act() == DType::kF32 ? 1e-5 : 1e-2; }
  double Atol() const { return act() == DType::kF32 ? 1e-5 : 1e-2; }
  double GradTol() const { return param() == DType::kF32 ? 1e-4 : 1e-2; }

  // An activation tensor on the GPU holding v, offset by GetParam().offset elements.
  Tensor Act(const std::vector<float>& v, const Shape& shape) {
    const int64_t off = GetParam().offset;
    std::vector<float> padded(off, 0.0f);
    padded.insert(padded.end(), v.begin(), v.end());
    Tensor base = MakeTensor(padded, {static_cast<int64_t>(padded.size())}, act(), Gpu());
    keep_.push_back(base);
    return *base.FlatView(off, static_cast<int64_t>(v.size())).Reshape(shape);
  }
  Tensor Param(const std::vector<float>& v) {
    return MakeTensor(v, {static_cast<int64_t>(v.size())}, param(), Gpu());
  }
  static Tensor Stats(int64_t n) {
    return MakeTensor(std::vector<float>(n, -7.0f), {n}, DType::kF32, Gpu());
  }
  static Tensor Cpu(const std::vector<float>& v, const Shape& s) {
    return Tensor::FromVector(v, s);
  }
  static Tensor CpuZeros(const Shape& s) { return *Tensor::Zeros(s, DType::kF32, CpuDevice()); }

  std::vector<Tensor> keep_;
};

TEST_P(NormGpuTest, LayerNormForwardAndBackward) {
  LOOM_SKIP_WITHOUT_CUDA();
  const int64_t n = 37, c = GetParam().c;
  const auto x = RoundTo(RandomFloats(n * c, 1, -2.0f, 3.0f), act());
  const auto dy = RoundTo(RandomFloats(n * c, 2), act());
  const auto w = RoundTo(RandomFloats(c, 3, 0.5f, 1.5f), param());
  const auto b = RoundTo(RandomFloats(c, 4), param());
  const auto dw0 = RoundTo(RandomFloats(c, 5, -0.1f, 0.1f), param());
  const auto db0 = RoundTo(RandomFloats(c, 6, -0.1f, 0.1f), param());

  Tensor g_x = Act(x, {n, c}), g_out = Act(std::vector<float>(n * c), {n, c});
  Tensor g_w = Param(w), g_b = Param(b), g_mean = Stats(n), g_rstd = Stats(n);
  ASSERT_TRUE(LayerNormForward(g_x, g_w, g_b, 1e-5f, g_out, g_mean, g_rstd).ok());
  Tensor c_out = CpuZeros({n, c}), c_mean = CpuZeros({n}), c_rstd = CpuZeros({n});
  ASSERT_TRUE(
      LayerNormForward(Cpu(x, {n, c}), Cpu(w, {c}), Cpu(b, {c}), 1e-5f, c_out, c_mean, c_rstd)
          .ok());
  EXPECT_TRUE(AllClose(HostValues(g_out), HostValues(c_out), Rtol(), Atol()));
  EXPECT_TRUE(AllClose(HostValues(g_mean), HostValues(c_mean), 1e-5, 1e-5));
  EXPECT_TRUE(AllClose(HostValues(g_rstd), HostValues(c_rstd), 1e-5, 1e-5));

  // Backward from the CPU statistics so both sides see identical inputs.
  Tensor g_dy = Act(dy, {n, c}), g_dx = Act(std::vector<float>(n * c, 99.0f), {n, c});
  Tensor g_dw = Param(dw0), g_db = Param(db0);
  Tensor g_cmean = MakeTensor(HostValues(c_mean), {n}, DType::kF32, Gpu());
  Tensor g_crstd = MakeTensor(HostValues(c_rstd), {n}, DType::kF32, Gpu());
  ASSERT_TRUE(LayerNormBackward(g_dy, g_x, g_w, g_cmean, g_crstd, g_dx, g_dw, g_db).ok());
  Tensor c_dx = CpuZeros({n, c}), c_dw = Cpu(dw0, {c}), c_db = Cpu(db0, {c});
  ASSERT_TRUE(LayerNormBackward(Cpu(dy, {n, c}), Cpu(x, {n, c}), Cpu(w, {c}), c_mean, c_rstd, c_dx,
                                c_dw, c_db)
                  .ok());
  EXPECT_TRUE(AllClose(HostValues(g_dx), HostValues(c_dx), Rtol(), Atol()));
  EXPECT_TRUE(AllClose(HostValues(g_dw), HostValues(c_dw), GradTol(), GradTol()));
  EXPECT_TRUE(AllClose(HostValues(g_db), HostValues(c_db), GradTol(), GradTol()));

  // In place (dx aliases dout) gives the same dx; the parameter gradients accumulate again
  // and come out bit-identical to a second separate call (deterministic reduction).
  Tensor g_dw2 = Param(dw0), g_db2 = Param(db0);
  ASSERT_TRUE(LayerNormBackward(g_dy, g_x, g_w, g_cmean, g_crstd, g_dx, g_dw2, g_db2).ok());
  EXPECT_EQ(HostValues(g_dw2), HostValues(g_dw));
  EXPECT_EQ(HostValues(g_db2), HostValues(g_db));
  const auto dx_separate = HostValues(g_dx);
  ASSERT_TRUE(LayerNormBackward(g_dy, g_x, g_w, g_cmean, g_crstd, g_dy, g_dw2, g_db2).ok());
  EXPECT_EQ(HostValues(g_dy), dx_separate);
}

TEST_P(NormGpuTest, RMSNormForwardAndBackward) {
  LOOM_SKIP_WITHOUT_CUDA();
  const int64_t n = 29, c = GetParam().c;
  const auto x = RoundTo(RandomFloats(n * c, 11, -2.0f, 2.0f), act());
  const auto dy = RoundTo(RandomFloats(n * c, 12), act());
  const auto w = RoundTo(RandomFloats(c, 13, 0.5f, 1.5f), param());
  const auto dw0 = RoundTo(RandomFloats(c, 14, -0.1f, 0.1f), param());

  Tensor g_x = Act(x, {n, c}), g_out = Act(std::vector<float>(n * c), {n, c});
  Tensor g_w = Param(w), g_rstd = Stats(n);
  ASSERT_TRUE(RMSNormForward(g_x, g_w, 1e-6f, g_out, g_rstd).ok());
  Tensor c_out = CpuZeros({n, c}), c_rstd = CpuZeros({n});
  ASSERT_TRUE(RMSNormForward(Cpu(x, {n, c}), Cpu(w, {c}), 1e-6f, c_out, c_rstd).ok());
  EXPECT_TRUE(AllClose(HostValues(g_out), HostValues(c_out), Rtol(), Atol()));
  EXPECT_TRUE(AllClose(HostValues(g_rstd), HostValues(c_rstd), 1e-5, 1e-5));

  Tensor g_dy = Act(dy, {n, c}), g_dx = Act(std::vector<float>(n * c), {n, c});
  Tensor g_dw = Param(dw0);
  Tensor g_crstd = MakeTensor(HostValues(c_rstd), {n}, DType::kF32, Gpu());
  ASSERT_TRUE(RMSNormBackward(g_dy, g_x, g_w, g_crstd, g_dx, g_dw).ok());
  Tensor c_dx = CpuZeros({n, c}), c_dw = Cpu(dw0, {c});
  ASSERT_TRUE(
      RMSNormBackward(Cpu(dy, {n, c}), Cpu(x, {n, c}), Cpu(w, {c}), c_rstd, c_dx, c_dw).ok());
  EXPECT_TRUE(AllClose(HostValues(g_dx), HostValues(c_dx), Rtol(), Atol()));
  EXPECT_TRUE(AllClose(HostValues(g_dw), HostValues(c_dw), GradTol(), GradTol()));
}

// residual_out must be exactly the rounded a + b, and the norm must normalise that rounded
// value (what the backward will later see as x).
TEST_P(NormGpuTest, FusedResidualForwards) {
  LOOM_SKIP_WITHOUT_CUDA();
  const int64_t n = 21, c = GetParam().c;
  const auto a = RoundTo(RandomFloats(n * c, 21, -2.0f, 2.0f), act());
  const auto b = RoundTo(RandomFloats(n * c, 22), act());
  const auto w = RoundTo(RandomFloats(c, 23, 0.5f, 1.5f), param());
  const auto bias = RoundTo(RandomFloats(c, 24), param());
  std::vector<float> sum(n * c);
  for (int64_t i = 0; i < n * c; ++i) sum[i] = a[i] + b[i];
  sum = RoundTo(sum, act());

  for (bool rms : {false, true}) {
    SCOPED_TRACE(rms ? "rmsnorm" : "layernorm");
    Tensor g_a = Act(a, {n, c}), g_b = Act(b, {n, c});
    Tensor g_res = Act(std::vector<float>(n * c), {n, c}),
           g_out = Act(std::vector<float>(n * c), {n, c});
    Tensor g_mean = Stats(n), g_rstd = Stats(n);
    Tensor c_out = CpuZeros({n, c}), c_mean = CpuZeros({n}), c_rstd = CpuZeros({n});
    if (rms) {
      ASSERT_TRUE(
          FusedResidualRMSNormForward(g_a, g_b, Param(w), 1e-6f, g_res, g_out, g_rstd).ok());
      ASSERT_TRUE(RMSNormForward(Cpu(sum, {n, c}), Cpu(w, {c}), 1e-6f, c_out, c_rstd).ok());
    } else {
      ASSERT_TRUE(FusedResidualLayerNormForward(g_a, g_b, Param(w), Param(bias), 1e-5f, g_res,
                                                g_out, g_mean, g_rstd)
                      .ok());
      ASSERT_TRUE(LayerNormForward(Cpu(sum, {n, c}), Cpu(w, {c}), Cpu(bias, {c}), 1e-5f, c_out,
                                   c_mean, c_rstd)
                      .ok());
      EXPECT_TRUE(AllClose(HostValues(g_mean), HostValues(c_mean), 1e-5, 1e-5));
    }
    EXPECT_EQ(HostValues(g_res), sum);
    EXPECT_TRUE(AllClose(HostValues(g_out), HostValues(c_out), Rtol(), Atol()));
    EXPECT_TRUE(AllClose(HostValues(g_rstd), HostValues(c_rstd), 1e-5, 1e-5));
  }
  // In place: the residual stream updated over its own input (residual_out aliases a).
  Tensor g_a = Act(a, {n, c}), g_out = Act(std::vector<float>(n * c), {n, c}), g_rstd = Stats(n);
  ASSERT_TRUE(
      FusedResidualRMSNormForward(g_a, Act(b, {n, c}), Param(w), 1e-6f, g_a, g_out, g_rstd).ok());
  EXPECT_EQ(HostValues(g_a), sum);
}

INSTANTIATE_TEST_SUITE_P(DTypesWidthsAlignment, NormGpuTest,
                         ::testing::Values(NormCase{DType::kF32, DType::kF32, 768, 0},
                                           NormCase{DType::kF32, DType::kF32, 67, 0},
                                           NormCase{DType::kF32, DType::kF32, 256, 1},
                                           NormCase{DType::kBF16, DType::kBF16, 768, 0},
                                           NormCase{DType::kBF16, DType::kF32, 768, 0},
                                           NormCase{DType::kBF16, DType::kBF16, 67, 0},
                                           NormCase{DType::kBF16, DType::kF32, 256, 1},
                                           NormCase{DType::kF32, DType::kBF16, 256, 0}),
                         Name);

// Many rows (more than one chunk of the parameter-gradient reduction, 64 rows per chunk) and
// a wide row: the reductions that depend on N and C.
TEST(NormGpuLargeTest, ManyRowsAndWideRows) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (const auto& [n, c] : {std::pair<int64_t, int64_t>{4099, 64}, {9, 8192}}) {
    SCOPED_TRACE(::testing::Message() << "N " << n << " C " << c);
    const auto x = RandomFloats(n * c, 31, -2.0f, 2.0f);
    const auto dy = RandomFloats(n * c, 32);
    const auto w = RandomFloats(c, 33, 0.5f, 1.5f), b = RandomFloats(c, 34);
    auto gpu = [&](const std::vector<float>& v, const Shape& s) {
      return MakeTensor(v, s, DType::kF32, Gpu());
    };
    Tensor g_out = gpu(std::vector<float>(n * c), {n, c}), g_mean = gpu(std::vector<float>(n), {n});
    Tensor g_rstd = gpu(std::vector<float>(n), {n});
    ASSERT_TRUE(
        LayerNormForward(gpu(x, {n, c}), gpu(w, {c}), gpu(b, {c}), 1e-5f, g_out, g_mean, g_rstd)
            .ok());
    Tensor c_out = *Tensor::Zeros({n, c}, DType::kF32, CpuDevice());
    Tensor c_mean = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
    Tensor c_rstd = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
    Tensor cx = Tensor::FromVector(x, {n, c}), cw = Tensor::FromVector(w, {c});
    ASSERT_TRUE(
        LayerNormForward(cx, cw, Tensor::FromVector(b, {c}), 1e-5f, c_out, c_mean, c_rstd).ok());
    EXPECT_TRUE(AllClose(HostValues(g_out), HostValues(c_out), 1e-5, 1e-5));
    Tensor g_dx = gpu(std::vector<float>(n * c), {n, c}), g_dw = gpu(std::vector<float>(c), {c});
    Tensor g_db = gpu(std::vector<float>(c), {c});
    ASSERT_TRUE(LayerNormBackward(gpu(dy, {n, c}), gpu(x, {n, c}), gpu(w, {c}), g_mean, g_rstd,
                                  g_dx, g_dw, g_db)
                    .ok());
    Tensor c_dx = *Tensor::Zeros({n, c}, DType::kF32, CpuDevice());
    Tensor c_dw = *Tensor::Zeros({c}, DType::kF32, CpuDevice());
    Tensor c_db = *Tensor::Zeros({c}, DType::kF32, CpuDevice());
    ASSERT_TRUE(
        LayerNormBackward(Tensor::FromVector(dy, {n, c}), cx, cw, c_mean, c_rstd, c_dx, c_dw, c_db)
            .ok());
    EXPECT_TRUE(AllClose(HostValues(g_dx), HostValues(c_dx), 1e-5, 1e-5));
    EXPECT_TRUE(AllClose(HostValues(g_dw), HostValues(c_dw), 1e-4, 1e-3));
    EXPECT_TRUE(AllClose(HostValues(g_db), HostValues(c_db), 1e-4, 1e-3));
  }
}

}  // namespace
}  // namespace loom::ops
