// CUDA vs CPU for ops/linear.h (label gpu; skips without a device).
// Tolerances: fp32 runs cuBLASLt with full fp32 compute (no TF32), so only the summation order
// differs from OpenBLAS: rtol 1e-4, atol 1e-4 for sums of ~100 products of values in [-1, 1].
// bf16: inputs are rounded to bf16 for the CPU reference too, products accumulate in fp32 and
// the output is rounded to bf16 once: rtol 2e-2, atol 3e-2 (or 1e-3 for fp32 outputs).
#include <vector>

#include "gtest/gtest.h"
#include "ops/linear.h"
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

struct LinearCase {
  int64_t n, ic, oc;
  DType dtype;      // inp, weight, dout
  DType out_dtype;  // out, pre_gelu, dweight, dbias
};

Tensor Cpu(const std::vector<float>& v, const Shape& s) { return Tensor::FromVector(v, s); }

class LinearGpuTest : public ::testing::TestWithParam<LinearCase> {
 protected:
  double Rtol() const { return GetParam().dtype == DType::kF32 ? 1e-4 : 2e-2; }
  double Atol() const {
    if (GetParam().dtype == DType::kF32) return 1e-4;
    return GetParam().out_dtype == DType::kF32 ? 1e-3 : 3e-2;
  }
};

TEST_P(LinearGpuTest, ForwardWithBiasAndGeluMatchesCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  const auto [n, ic, oc, dt, out_dt] = GetParam();
  const auto inp_v = RoundTo(RandomFloats(n * ic, 1), dt);
  const auto w_v = RoundTo(RandomFloats(oc * ic, 2), dt);
  const auto b_v = RoundTo(RandomFloats(oc, 3), out_dt);
  Tensor inp = MakeTensor(inp_v, {n, ic}, dt, Gpu());
  Tensor w = MakeTensor(w_v, {oc, ic}, dt, Gpu());
  Tensor b = MakeTensor(b_v, {oc}, out_dt, Gpu());
  Tensor out = *Tensor::Zeros({n, oc}, out_dt, Gpu());
  Tensor pre = *Tensor::Zeros({n, oc}, out_dt, Gpu());

  Tensor c_inp = Cpu(inp_v, {n, ic}), c_w = Cpu(w_v, {oc, ic}), c_b = Cpu(b_v, {oc});
  Tensor c_out = *Tensor::Zeros({n, oc}, DType::kF32, CpuDevice());
  Tensor c_pre = *Tensor::Zeros({n, oc}, DType::kF32, CpuDevice());

  // Plain, bias, bias + GeLU.
  ASSERT_TRUE(LinearForward(inp, w, nullptr, out).ok());
  ASSERT_TRUE(LinearForward(c_inp, c_w, nullptr, c_out).ok());
  EXPECT_TRUE(AllClose(HostValues(out), HostValues(c_out), Rtol(), Atol())) << "no bias";

  ASSERT_TRUE(LinearForward(inp, w, &b, out).ok());
  ASSERT_TRUE(LinearForward(c_inp, c_w, &c_b, c_out).ok());
  EXPECT_TRUE(AllClose(HostValues(out), HostValues(c_out), Rtol(), Atol())) << "bias";

  ASSERT_TRUE(LinearForward(inp, w, &b, out, &pre).ok());
  ASSERT_TRUE(LinearForward(c_inp, c_w, &c_b, c_out, &c_pre).ok());
  EXPECT_TRUE(AllClose(HostValues(pre), HostValues(c_pre), Rtol(), Atol())) << "pre_gelu";
  EXPECT_TRUE(AllClose(HostValues(out), HostValues(c_out), Rtol(), Atol())) << "gelu out";
}

TEST_P(LinearGpuTest, BackwardMatchesCpuAndAccumulates) {
  LOOM_SKIP_WITHOUT_CUDA();
  const auto [n, ic, oc, dt, grad_dt] = GetParam();
  const auto inp_v = RoundTo(RandomFloats(n * ic, 4), dt);
  const auto w_v = RoundTo(RandomFloats(oc * ic, 5), dt);
  const auto dout_v = RoundTo(RandomFloats(n * oc, 6), dt);
  const auto dw0 = RoundTo(RandomFloats(oc * ic, 7), grad_dt);
  const auto db0 = RoundTo(RandomFloats(oc, 8), grad_dt);
  Tensor inp = MakeTensor(inp_v, {n, ic}, dt, Gpu());
  Tensor w = MakeTensor(w_v, {oc, ic}, dt, Gpu());
  Tensor dout = MakeTensor(dout_v, {n, oc}, dt, Gpu());
  Tensor dinp = *Tensor::Zeros({n, ic}, dt, Gpu());
  Tensor dw = MakeTensor(dw0, {oc, ic}, grad_dt, Gpu());
  Tensor db = MakeTensor(db0, {oc}, grad_dt, Gpu());
  ASSERT_TRUE(LinearBackward(dout, inp, w, &dinp, dw, &db).ok());

  Tensor c_dinp = *Tensor::Zeros({n, ic}, DType::kF32, CpuDevice());
  Tensor c_dw = Cpu(dw0, {oc, ic}), c_db = Cpu(db0, {oc});
  ASSERT_TRUE(LinearBackward(Cpu(dout_v, {n, oc}), Cpu(inp_v, {n, ic}), Cpu(w_v, {oc, ic}), &c_dinp,
                             c_dw, &c_db)
                  .ok());
  const double dinp_atol = dt == DType::kF32 ? 1e-4 : 3e-2;
  EXPECT_TRUE(AllClose(HostValues(dinp), HostValues(c_dinp), Rtol(), dinp_atol)) << "dinp";
  EXPECT_TRUE(AllClose(HostValues(dw), HostValues(c_dw), Rtol(), Atol())) << "dweight";
  EXPECT_TRUE(AllClose(HostValues(db), HostValues(c_db), Rtol(), Atol())) << "dbias";

  // The bias gradient is deterministic: the same call from the same state gives the same bits.
  Tensor db2 = MakeTensor(db0, {oc}, grad_dt, Gpu());
  Tensor db3 = MakeTensor(db0, {oc}, grad_dt, Gpu());
  ASSERT_TRUE(LinearBackward(dout, inp, w, nullptr, dw, &db2).ok());
  ASSERT_TRUE(LinearBackward(dout, inp, w, nullptr, dw, &db3).ok());
  EXPECT_EQ(HostValues(db2), HostValues(db3));
}

// The ZERO_BUBBLE split on the GPU: LinearBackwardInput then LinearBackwardWeight give
// LinearBackward's dinp, dweight and dbias bit for bit (the same cuBLASLt calls).
TEST_P(LinearGpuTest, SplitBackwardEqualsFusedBitwise) {
  LOOM_SKIP_WITHOUT_CUDA();
  const auto [n, ic, oc, dt, grad_dt] = GetParam();
  const auto inp_v = RoundTo(RandomFloats(n * ic, 14), dt);
  const auto w_v = RoundTo(RandomFloats(oc * ic, 15), dt);
  const auto dout_v = RoundTo(RandomFloats(n * oc, 16), dt);
  const auto dw0 = RoundTo(RandomFloats(oc * ic, 17), grad_dt);
  const auto db0 = RoundTo(RandomFloats(oc, 18), grad_dt);
  Tensor inp = MakeTensor(inp_v, {n, ic}, dt, Gpu());
  Tensor w = MakeTensor(w_v, {oc, ic}, dt, Gpu());
  Tensor dout = MakeTensor(dout_v, {n, oc}, dt, Gpu());
  Tensor dinp_f = *Tensor::Zeros({n, ic}, dt, Gpu()), dinp_s = *Tensor::Zeros({n, ic}, dt, Gpu());
  Tensor dw_f = MakeTensor(dw0, {oc, ic}, grad_dt, Gpu());
  Tensor dw_s = MakeTensor(dw0, {oc, ic}, grad_dt, Gpu());
  Tensor db_f = MakeTensor(db0, {oc}, grad_dt, Gpu()), db_s = MakeTensor(db0, {oc}, grad_dt, Gpu());
  ASSERT_TRUE(LinearBackward(dout, inp, w, &dinp_f, dw_f, &db_f).ok());
  ASSERT_TRUE(LinearBackwardInput(dout, w, dinp_s).ok());
  ASSERT_TRUE(LinearBackwardWeight(dout, inp, w, dw_s, &db_s).ok());
  EXPECT_EQ(HostValues(dinp_f), HostValues(dinp_s)) << "dinp";
  EXPECT_EQ(HostValues(dw_f), HostValues(dw_s)) << "dweight";
  EXPECT_EQ(HostValues(db_f), HostValues(db_s)) << "dbias";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LinearGpuTest,
    ::testing::Values(
        // Multiples of 8: the fused cuBLASLt epilogues apply.
        LinearCase{64, 96, 80, DType::kF32, DType::kF32},
        LinearCase{64, 96, 80, DType::kBF16, DType::kBF16},
        LinearCase{64, 96, 80, DType::kBF16, DType::kF32},
        // Odd sizes: unaligned rows push cuBLASLt to other kernels and the epilogue fallbacks.
        LinearCase{7, 13, 5, DType::kF32, DType::kF32},
        LinearCase{7, 13, 5, DType::kBF16, DType::kBF16},
        // Many rows: several slabs in the fallback bias-gradient reduction.
        LinearCase{2048, 16, 24, DType::kF32, DType::kF32}));

class GemmGpuTest : public ::testing::TestWithParam<std::pair<bool, bool>> {};

TEST_P(GemmGpuTest, MatchesCpuForEveryTransposeCombination) {
  LOOM_SKIP_WITHOUT_CUDA();
  const auto [trans_a, trans_b] = GetParam();
  const int64_t m = 33, n = 17, k = 40;
  const auto a_v = RandomFloats(m * k, 10);
  const auto b_v = RandomFloats(k * n, 11);
  const auto c_v = RandomFloats(m * n, 12);
  const Shape a_shape = trans_a ? Shape{k, m} : Shape{m, k};
  const Shape b_shape = trans_b ? Shape{n, k} : Shape{k, n};
  Tensor c = MakeTensor(c_v, {m, n}, DType::kF32, Gpu());
  Tensor c_ref = Cpu(c_v, {m, n});
  ASSERT_TRUE(Gemm(MakeTensor(a_v, a_shape, DType::kF32, Gpu()), trans_a,
                   MakeTensor(b_v, b_shape, DType::kF32, Gpu()), trans_b, c, 0.5f, -1.0f)
                  .ok());
  ASSERT_TRUE(
      Gemm(Cpu(a_v, a_shape), trans_a, Cpu(b_v, b_shape), trans_b, c_ref, 0.5f, -1.0f).ok());
  EXPECT_TRUE(AllClose(HostValues(c), HostValues(c_ref), 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, GemmGpuTest,
                         ::testing::Values(std::pair{false, false}, std::pair{false, true},
                                           std::pair{true, false}, std::pair{true, true}));

}  // namespace
}  // namespace loom::ops
