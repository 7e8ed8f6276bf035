// CUDA vs CPU for ops/attention.h (label gpu; skips without a device).
// Inputs are rounded to the device dtype and the CPU reference (fp32) runs on those exact
// values. The backward gets the same out / lse on both sides (the CPU's, out rounded to the
// dtype), so it is checked on its own. Tolerances:
//   f32: out rtol 1e-4 / atol 5e-5, lse atol 1e-4, dqkv rtol 1e-4 / atol 1e-4 (fp32 sums in
//        other orders, exp2f vs the CPU's polynomial exp);
//   bf16: out and dqkv rtol 2e-2 / atol 2e-2 (fp32 sums on identical inputs, then one bf16
//        rounding of the output; the tensor-core kernels also round P and dS to bf16 before
//        their products), lse atol 1e-4 (fp32 either way).
// bf16 runs twice: with the tensor-core kernels (the default) and the SIMT kernels.
// Shapes cover T = 1, T below / at / above one 64-row tile, many tiles, MHA and GQA groups of
// 2, 3 and 4, HD 64 and 128, padded head dims (40, 8) and a head dim that rules out vector
// loads (6).
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/attention.h"
#ifdef LOOM_WITH_CUDA
#include "ops/cuda/attention.h"
#endif
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

struct AttnCase {
  int64_t b, t;
  int nh, nkv, hd;
};

std::vector<AttnCase> Cases() {
  return {AttnCase{2, 1, 2, 1, 64},   AttnCase{2, 63, 4, 2, 64},  AttnCase{1, 64, 2, 2, 128},
          AttnCase{2, 65, 6, 2, 128}, AttnCase{1, 200, 4, 1, 64}, AttnCase{2, 70, 2, 1, 40},
          AttnCase{1, 33, 3, 3, 8},   AttnCase{1, 20, 2, 1, 6},   AttnCase{1, 512, 2, 2, 64}};
}

struct KernelCase {
  DType dtype;
  bool tensor_cores;  // bf16 only: which kernel family
};

class AttentionGpuTest : public ::testing::TestWithParam<KernelCase> {
 protected:
  void SetUp() override {
#ifdef LOOM_WITH_CUDA
    saved_ = cuda::GetBf16AttentionKernel();
    cuda::SetBf16AttentionKernel(GetParam().tensor_cores ? cuda::Bf16AttentionKernel::kTensorCore
                                                         : cuda::Bf16AttentionKernel::kSimt);
#endif
  }
  void TearDown() override {
#ifdef LOOM_WITH_CUDA
    cuda::SetBf16AttentionKernel(saved_);
#endif
  }
  DType dt() const { return GetParam().dtype; }
  bool f32() const { return dt() == DType::kF32; }

 private:
#ifdef LOOM_WITH_CUDA
  cuda::Bf16AttentionKernel saved_ = cuda::Bf16AttentionKernel::kTensorCore;
#endif
};

TEST_P(AttentionGpuTest, ForwardMatchesCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (const AttnCase& c : Cases()) {
    SCOPED_TRACE(::testing::Message()
                 << "B" << c.b << " T" << c.t << " NH" << c.nh << " NKV" << c.nkv << " HD" << c.hd);
    const Shape qs{c.b, c.t, static_cast<int64_t>(c.nh + 2 * c.nkv) * c.hd};
    const Shape os{c.b, c.t, static_cast<int64_t>(c.nh) * c.hd};
    const Shape ls{c.b, c.nh, c.t};
    const auto x = RoundTo(RandomFloats(qs.numel(), 1, -2.0f, 2.0f), dt());
    Tensor g_out = MakeTensor(std::vector<float>(os.numel(), NAN), os, dt(), Gpu());
    Tensor g_lse = MakeTensor(std::vector<float>(ls.numel(), NAN), ls, DType::kF32, Gpu());
    ASSERT_TRUE(AttentionForward(MakeTensor(x, qs, dt(), Gpu()), c.nh, c.nkv, g_out, g_lse).ok());
    Tensor c_out = *Tensor::Zeros(os, DType::kF32, CpuDevice());
    Tensor c_lse = *Tensor::Zeros(ls, DType::kF32, CpuDevice());
    ASSERT_TRUE(AttentionForward(Tensor::FromVector(x, qs), c.nh, c.nkv, c_out, c_lse).ok());
    EXPECT_TRUE(
        AllClose(HostValues(g_out), HostValues(c_out), f32() ? 1e-4 : 2e-2, f32() ? 5e-5 : 2e-2));
    EXPECT_TRUE(AllClose(HostValues(g_lse), HostValues(c_lse), 1e-5, 1e-4));
  }
}

TEST_P(AttentionGpuTest, BackwardMatchesCpuAndIsDeterministic) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (const AttnCase& c : Cases()) {
    SCOPED_TRACE(::testing::Message()
                 << "B" << c.b << " T" << c.t << " NH" << c.nh << " NKV" << c.nkv << " HD" << c.hd);
    const Shape qs{c.b, c.t, static_cast<int64_t>(c.nh + 2 * c.nkv) * c.hd};
    const Shape os{c.b, c.t, static_cast<int64_t>(c.nh) * c.hd};
    const Shape ls{c.b, c.nh, c.t};
    const auto x = RoundTo(RandomFloats(qs.numel(), 2, -2.0f, 2.0f), dt());
    const auto dy = RoundTo(RandomFloats(os.numel(), 3), dt());
    // The CPU forward provides out and lse for both backwards.
    Tensor c_qkv = Tensor::FromVector(x, qs);
    Tensor c_out = *Tensor::Zeros(os, DType::kF32, CpuDevice());
    Tensor c_lse = *Tensor::Zeros(ls, DType::kF32, CpuDevice());
    ASSERT_TRUE(AttentionForward(c_qkv, c.nh, c.nkv, c_out, c_lse).ok());
    const auto out_v = RoundTo(HostValues(c_out), dt());
    Tensor c_dqkv = *Tensor::Zeros(qs, DType::kF32, CpuDevice());
    ASSERT_TRUE(AttentionBackward(Tensor::FromVector(dy, os), c_qkv, Tensor::FromVector(out_v, os),
                                  c_lse, c.nh, c.nkv, c_dqkv)
                    .ok());

    Tensor g_qkv = MakeTensor(x, qs, dt(), Gpu());
    Tensor g_dy = MakeTensor(dy, os, dt(), Gpu());
    Tensor g_out = MakeTensor(out_v, os, dt(), Gpu());
    Tensor g_lse = MakeTensor(HostValues(c_lse), ls, DType::kF32, Gpu());
    // NaN first: every element of dqkv must be written (overwrite, no accumulation).
    Tensor g_dqkv = MakeTensor(std::vector<float>(qs.numel(), NAN), qs, dt(), Gpu());
    ASSERT_TRUE(AttentionBackward(g_dy, g_qkv, g_out, g_lse, c.nh, c.nkv, g_dqkv).ok());
    const auto got = HostValues(g_dqkv);
    EXPECT_TRUE(AllClose(got, HostValues(c_dqkv), f32() ? 1e-4 : 2e-2, f32() ? 1e-4 : 2e-2));

    Tensor g_dqkv2 = MakeTensor(std::vector<float>(qs.numel(), 0.0f), qs, dt(), Gpu());
    ASSERT_TRUE(AttentionBackward(g_dy, g_qkv, g_out, g_lse, c.nh, c.nkv, g_dqkv2).ok());
    EXPECT_EQ(HostValues(g_dqkv2), got) << "two runs of the backward differ";
  }
}

// The training path: the GPU backward fed by the GPU forward, checked end to end in fp32.
TEST(AttentionGpuEndToEndTest, ForwardThenBackwardOnDevice) {
  LOOM_SKIP_WITHOUT_CUDA();
  const int64_t b = 2, t = 130;
  const int nh = 4, nkv = 2, hd = 64;
  const Shape qs{b, t, (nh + 2 * nkv) * hd}, os{b, t, nh * hd}, ls{b, nh, t};
  const auto x = RandomFloats(qs.numel(), 4, -1.5f, 1.5f);
  const auto dy = RandomFloats(os.numel(), 5);
  Tensor g_qkv = MakeTensor(x, qs, DType::kF32, Gpu());
  Tensor g_out = MakeTensor(std::vector<float>(os.numel()), os, DType::kF32, Gpu());
  Tensor g_lse = MakeTensor(std::vector<float>(ls.numel()), ls, DType::kF32, Gpu());
  Tensor g_dqkv = MakeTensor(std::vector<float>(qs.numel()), qs, DType::kF32, Gpu());
  ASSERT_TRUE(AttentionForward(g_qkv, nh, nkv, g_out, g_lse).ok());
  ASSERT_TRUE(AttentionBackward(MakeTensor(dy, os, DType::kF32, Gpu()), g_qkv, g_out, g_lse, nh,
                                nkv, g_dqkv)
                  .ok());
  Tensor c_qkv = Tensor::FromVector(x, qs);
  Tensor c_out = *Tensor::Zeros(os, DType::kF32, CpuDevice());
  Tensor c_lse = *Tensor::Zeros(ls, DType::kF32, CpuDevice());
  Tensor c_dqkv = *Tensor::Zeros(qs, DType::kF32, CpuDevice());
  ASSERT_TRUE(AttentionForward(c_qkv, nh, nkv, c_out, c_lse).ok());
  ASSERT_TRUE(
      AttentionBackward(Tensor::FromVector(dy, os), c_qkv, c_out, c_lse, nh, nkv, c_dqkv).ok());
  EXPECT_TRUE(AllClose(HostValues(g_dqkv), HostValues(c_dqkv), 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Kernels, AttentionGpuTest,
                         ::testing::Values(KernelCase{DType::kF32, false},
                                           KernelCase{DType::kBF16, true},
                                           KernelCase{DType::kBF16, false}),
                         [](const ::testing::TestParamInfo<KernelCase>& info) {
                           if (info.param.dtype == DType::kF32) return std::string("f32");
                           return std::string(info.param.tensor_cores ? "bf16_tensor_cores"
                                                                      : "bf16_simt");
                         });

}  // namespace
}  // namespace loom::ops
