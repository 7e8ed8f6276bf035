// CUDA vs CPU for block-diagonal causal attention (segments, ops/attention.h; label gpu, skips
// without a device): forward and backward, f32 and bf16 on both kernel families, with segment
// boundaries inside a 64-key tile, exactly on a tile edge, one-token segments, and query rows
// whose first key tiles are wholly masked (the online softmax's running max stays -inf until a
// visible key arrives). Tolerances as in attention_gpu_test.cc. One segment everywhere equals
// the plain kernel bit for bit.
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

struct SegCase {
  int64_t b, t;
  int nh, nkv, hd;
  std::vector<std::vector<int64_t>> starts;  // per row
};

std::vector<SegCase> Cases() {
  return {SegCase{2, 150, 4, 2, 64, {{0, 10, 64, 100, 101}, {0, 1, 2, 140}}},
          SegCase{1, 200, 2, 1, 128, {{0, 129, 130, 199}}},
          SegCase{2, 33, 3, 3, 40, {{0, 5}, {0, 16, 17}}}};
}

std::vector<float> Ids(const SegCase& c) {
  std::vector<float> ids;
  for (const auto& row : c.starts) {
    int id = 0;
    for (int64_t i = 0; i < c.t; ++i) {
      for (int64_t s : row) id += (s == i && i > 0) ? 1 : 0;
      ids.push_back(static_cast<float>(id));
    }
  }
  return ids;
}

struct KernelCase {
  DType dtype;
  bool tensor_cores;
};

class AttentionSegmentsGpuTest : public ::testing::TestWithParam<KernelCase> {
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

TEST_P(AttentionSegmentsGpuTest, ForwardAndBackwardMatchCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (const SegCase& c : Cases()) {
    SCOPED_TRACE(::testing::Message() << "B" << c.b << " T" << c.t << " HD" << c.hd);
    const Shape qs{c.b, c.t, static_cast<int64_t>(c.nh + 2 * c.nkv) * c.hd};
    const Shape os{c.b, c.t, static_cast<int64_t>(c.nh) * c.hd};
    const Shape ls{c.b, c.nh, c.t};
    const Shape ss{c.b, c.t};
    const auto x = RoundTo(RandomFloats(qs.numel(), 11, -2.0f, 2.0f), dt());
    const auto dy = RoundTo(RandomFloats(os.numel(), 12), dt());
    const auto ids = Ids(c);
    Tensor c_seg = MakeTensor(ids, ss, DType::kI32, CpuDevice());
    Tensor g_seg = MakeTensor(ids, ss, DType::kI32, Gpu());

    Tensor c_qkv = Tensor::FromVector(x, qs);
    Tensor c_out = *Tensor::Zeros(os, DType::kF32, CpuDevice());
    Tensor c_lse = *Tensor::Zeros(ls, DType::kF32, CpuDevice());
    ASSERT_TRUE(AttentionForward(c_qkv, c.nh, c.nkv, c_out, c_lse, &c_seg).ok());
    Tensor g_qkv = MakeTensor(x, qs, dt(), Gpu());
    Tensor g_out = MakeTensor(std::vector<float>(os.numel(), NAN), os, dt(), Gpu());
    Tensor g_lse = MakeTensor(std::vector<float>(ls.numel(), NAN), ls, DType::kF32, Gpu());
    ASSERT_TRUE(AttentionForward(g_qkv, c.nh, c.nkv, g_out, g_lse, &g_seg).ok());
    EXPECT_TRUE(
        AllClose(HostValues(g_out), HostValues(c_out), f32() ? 1e-4 : 2e-2, f32() ? 5e-5 : 2e-2));
    EXPECT_TRUE(AllClose(HostValues(g_lse), HostValues(c_lse), 1e-5, 1e-4));

    const auto out_v = RoundTo(HostValues(c_out), dt());
    Tensor c_dqkv = *Tensor::Zeros(qs, DType::kF32, CpuDevice());
    ASSERT_TRUE(AttentionBackward(Tensor::FromVector(dy, os), c_qkv, Tensor::FromVector(out_v, os),
                                  c_lse, c.nh, c.nkv, c_dqkv, &c_seg)
                    .ok());
    Tensor g_dqkv = MakeTensor(std::vector<float>(qs.numel(), NAN), qs, dt(), Gpu());
    ASSERT_TRUE(AttentionBackward(MakeTensor(dy, os, dt(), Gpu()), g_qkv,
                                  MakeTensor(out_v, os, dt(), Gpu()),
                                  MakeTensor(HostValues(c_lse), ls, DType::kF32, Gpu()), c.nh,
                                  c.nkv, g_dqkv, &g_seg)
                    .ok());
    EXPECT_TRUE(
        AllClose(HostValues(g_dqkv), HostValues(c_dqkv), f32() ? 1e-4 : 2e-2, f32() ? 1e-4 : 2e-2));
  }
}

TEST_P(AttentionSegmentsGpuTest, OneSegmentEqualsPlainKernel) {
  LOOM_SKIP_WITHOUT_CUDA();
  const int64_t b = 2, t = 130;
  const int nh = 4, nkv = 2, hd = 64;
  const Shape qs{b, t, static_cast<int64_t>(nh + 2 * nkv) * hd};
  const Shape os{b, t, static_cast<int64_t>(nh) * hd};
  const Shape ls{b, nh, t};
  const auto x = RoundTo(RandomFloats(qs.numel(), 13, -2.0f, 2.0f), dt());
  Tensor qkv = MakeTensor(x, qs, dt(), Gpu());
  Tensor seg = MakeTensor(std::vector<float>(b * t, 7.0f), Shape{b, t}, DType::kI32, Gpu());
  Tensor o1 = MakeTensor(std::vector<float>(os.numel(), 0), os, dt(), Gpu());
  Tensor o2 = MakeTensor(std::vector<float>(os.numel(), 0), os, dt(), Gpu());
  Tensor l1 = MakeTensor(std::vector<float>(ls.numel(), 0), ls, DType::kF32, Gpu());
  Tensor l2 = MakeTensor(std::vector<float>(ls.numel(), 0), ls, DType::kF32, Gpu());
  ASSERT_TRUE(AttentionForward(qkv, nh, nkv, o1, l1).ok());
  ASSERT_TRUE(AttentionForward(qkv, nh, nkv, o2, l2, &seg).ok());
  EXPECT_EQ(HostValues(o1), HostValues(o2));
  EXPECT_EQ(HostValues(l1), HostValues(l2));
  Tensor dy = MakeTensor(RoundTo(RandomFloats(os.numel(), 14), dt()), os, dt(), Gpu());
  Tensor d1 = MakeTensor(std::vector<float>(qs.numel(), 0), qs, dt(), Gpu());
  Tensor d2 = MakeTensor(std::vector<float>(qs.numel(), 0), qs, dt(), Gpu());
  ASSERT_TRUE(AttentionBackward(dy, qkv, o1, l1, nh, nkv, d1).ok());
  ASSERT_TRUE(AttentionBackward(dy, qkv, o1, l1, nh, nkv, d2, &seg).ok());
  EXPECT_EQ(HostValues(d1), HostValues(d2));
}

INSTANTIATE_TEST_SUITE_P(Kernels, AttentionSegmentsGpuTest,
                         ::testing::Values(KernelCase{DType::kF32, false},
                                           KernelCase{DType::kBF16, true},
                                           KernelCase{DType::kBF16, false}),
                         [](const auto& info) {
                           if (info.param.dtype == DType::kF32) return std::string("f32");
                           return std::string(info.param.tensor_cores ? "bf16_tc" : "bf16_simt");
                         });

}  // namespace
}  // namespace loom::ops
