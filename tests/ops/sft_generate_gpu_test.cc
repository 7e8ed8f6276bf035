// CUDA vs CPU for the op paths that fine-tuning and generation take (issue 20) beyond the
// per-family GPU tests (label gpu; skips without a device):
//   - block-diagonal causal attention (segments) on layouts the packed SFT shards make and the
//     per-family test does not: every token its own segment (a row sees only itself, so every
//     key tile before the diagonal is wholly masked), boundaries on both sides of a tile edge
//     (63 | 64 | 65) and at the last row of a tile, GQA with 4 query heads per kv head at
//     HD 128, and batch rows with different layouts, forward and backward, on the f32 kernel
//     and both bf16 kernel families;
//   - DecodeAttention as generation calls it, one new token per step at every cache length
//     across the 128-key stride of a block and the 64-row tiles, GQA / MQA, and a cache with
//     rows past pos0 + n that hold NaN (they must never be read); a prefill of a whole prompt;
//   - the masked cross-entropy as the SFT trainer runs it: long runs of ignored targets (the
//     prompt's tokens), rows of one micro-batch all ignored (loss 0, gradient 0), and the
//     weight dloss = rows / counted of the mean over the counted targets.
// Tolerances as in attention_gpu_test.cc / cross_entropy_gpu_test.cc.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/decode_attention.h"
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
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

// ---- attention with segments ------------------------------------------------------------

struct Layout {
  const char* name;
  int64_t b, t;
  int nh, nkv, hd;
  // Per batch row: segment ids from the start positions (an empty list: one token per
  // segment, ids 0, 1, 2, ...).
  std::vector<std::vector<int64_t>> starts;
};

std::vector<Layout> Layouts() {
  return {
      Layout{"own_segment", 2, 70, 4, 1, 64, {{}, {}}},
      Layout{"tile_edges_gqa4_hd128", 2, 191, 8, 2, 128, {{0, 63, 64, 65, 127, 128}, {0, 190}}},
      Layout{"last_row_of_tile", 1, 129, 2, 2, 32, {{0, 63, 128}}},
  };
}

std::vector<float> SegmentIds(const Layout& c) {
  std::vector<float> ids;
  for (const auto& row : c.starts) {
    int id = 0;
    for (int64_t i = 0; i < c.t; ++i) {
      if (row.empty()) {
        id = static_cast<int>(i);
      } else {
        for (int64_t s : row) id += (s == i && i > 0) ? 1 : 0;
      }
      ids.push_back(static_cast<float>(id));
    }
  }
  return ids;
}

struct Kernel {
  DType dtype;
  bool tensor_cores;
};

class SftAttentionGpuTest : public ::testing::TestWithParam<Kernel> {
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

TEST_P(SftAttentionGpuTest, PackedLayoutsMatchCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (const Layout& c : Layouts()) {
    SCOPED_TRACE(c.name);
    const int64_t hd = c.hd, w = static_cast<int64_t>(c.nh + 2 * c.nkv) * hd;
    const Shape qs{c.b, c.t, w};
    const Shape os{c.b, c.t, int64_t{c.nh} * hd};
    const Shape ls{c.b, c.nh, c.t};
    const Shape ss{c.b, c.t};
    const auto x = RoundTo(RandomFloats(qs.numel(), 31, -2.0f, 2.0f), dt());
    const auto dy = RoundTo(RandomFloats(os.numel(), 32), dt());
    const auto ids = SegmentIds(c);
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
    const auto out = HostValues(g_out);
    EXPECT_TRUE(AllClose(out, HostValues(c_out), f32() ? 1e-4 : 2e-2, f32() ? 5e-5 : 2e-2));
    EXPECT_TRUE(AllClose(HostValues(g_lse), HostValues(c_lse), 1e-5, 1e-4));
    if (c.starts[0].empty()) {
      // A row that sees only itself copies its own value row (one rounding in bf16).
      const int group = c.nh / c.nkv;
      for (int64_t r = 0; r < c.b * c.t; ++r) {
        for (int h = 0; h < c.nh; ++h) {
          for (int64_t d = 0; d < hd; ++d) {
            const float v = x[r * w + (c.nh + c.nkv + h / group) * hd + d];
            ASSERT_NEAR(out[(r * c.nh + h) * hd + d], v, f32() ? 1e-6 : 1e-2 * std::fabs(v))
                << "token " << r << " head " << h;
          }
        }
      }
    }

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

INSTANTIATE_TEST_SUITE_P(Kernels, SftAttentionGpuTest,
                         ::testing::Values(Kernel{DType::kF32, false}, Kernel{DType::kBF16, true},
                                           Kernel{DType::kBF16, false}),
                         [](const auto& info) {
                           if (info.param.dtype == DType::kF32) return std::string("f32");
                           return std::string(info.param.tensor_cores ? "bf16_tc" : "bf16_simt");
                         });

// ---- decode attention over a KV cache ------------------------------------------------------

// One generation step: out of position pos over the cache's first pos + 1 rows. The cache
// tensor has `extra` rows beyond them filled with NaN.
void ExpectDecodeMatches(DType dt, int nh, int nkv, int hd, int64_t pos0, int64_t n, int64_t extra,
                         uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << DTypeName(dt) << " nh " << nh << " nkv " << nkv << " hd "
                                    << hd << " pos0 " << pos0 << " n " << n);
  const int64_t w = static_cast<int64_t>(nh + 2 * nkv) * hd, ow = int64_t{nh} * hd;
  const int64_t used = pos0 + n, len = used + extra;
  auto x = RoundTo(RandomFloats(used * w, seed, -2.0f, 2.0f), dt);
  Tensor cpu_out = *Tensor::Zeros(Shape{n, ow}, DType::kF32, CpuDevice());
  ASSERT_TRUE(DecodeAttention(Tensor::FromVector(x, {used, w}), nh, nkv, pos0, n, cpu_out).ok());
  x.resize(len * w, NAN);
  Tensor gpu_out = MakeTensor(std::vector<float>(n * ow, NAN), Shape{n, ow}, dt, Gpu());
  ASSERT_TRUE(
      DecodeAttention(MakeTensor(x, Shape{len, w}, dt, Gpu()), nh, nkv, pos0, n, gpu_out).ok());
  const bool f32 = dt == DType::kF32;
  EXPECT_TRUE(
      AllClose(HostValues(gpu_out), HostValues(cpu_out), f32 ? 1e-4 : 2e-2, f32 ? 5e-5 : 2e-2));
}

TEST(SftDecodeAttentionGpuTest, EveryCacheLengthAsGenerationCallsIt) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::kF32, DType::kBF16}) {
    // One token per step at cache lengths around the block's 128-key stride and the tiles.
    for (int64_t pos : {0, 1, 2, 31, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511}) {
      ExpectDecodeMatches(dt, 8, 2, 64, pos, 1, 5, 40 + pos);  // GQA, 4 heads per kv head
    }
    ExpectDecodeMatches(dt, 8, 1, 128, 700, 1, 3, 41);   // MQA, HD 128, a long cache
    ExpectDecodeMatches(dt, 3, 3, 96, 100, 1, 0, 42);    // MHA, HD 96
    ExpectDecodeMatches(dt, 4, 2, 64, 0, 129, 7, 43);    // a prompt's prefill
    ExpectDecodeMatches(dt, 6, 3, 48, 200, 17, 11, 44);  // several tokens after a cache
  }
}

// ---- masked, weighted cross-entropy ---------------------------------------------------------

TEST(SftCrossEntropyGpuTest, MaskedRunsAndCountWeightMatchCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int64_t v : {int64_t{1024}, int64_t{257}}) {  // 128-bit path, scalar path
      SCOPED_TRACE(::testing::Message() << DTypeName(dt) << " V " << v);
      const int64_t n = 40;
      // A packed sample: prompt (ignored), answer (counted), prompt, answer, then padding.
      std::vector<int32_t> tg(n, -1);
      const auto u = RandomDoubles(n, 51, 0.0, 1.0);
      int64_t counted = 0;
      for (int64_t r = 0; r < n; ++r) {
        if ((r >= 9 && r < 17) || (r >= 25 && r < 33)) {
          tg[r] = static_cast<int32_t>(u[r] * v);
          ++counted;
        }
      }
      const float dloss = static_cast<float>(n) / static_cast<float>(counted);
      const Shape s{n, v};
      const auto x = RoundTo(RandomFloats(s.numel(), 52, -6.0f, 6.0f), dt);
      Tensor c_losses = *Tensor::Zeros({n}, DType::kF32, CpuDevice());
      Tensor c_grad = *Tensor::Zeros(s, DType::kF32, CpuDevice());
      ASSERT_TRUE(CrossEntropyForwardBackward(Tensor::FromVector(x, s),
                                              Tensor::FromVectorI32(tg, {n}), c_losses, &c_grad,
                                              dloss)
                      .ok());
      Tensor g_targets = *Tensor::FromVectorI32(tg, {n}).To(Gpu());
      Tensor g_losses = MakeTensor(std::vector<float>(n, NAN), {n}, DType::kF32, Gpu());
      Tensor g_grad = MakeTensor(std::vector<float>(s.numel(), NAN), s, dt, Gpu());
      ASSERT_TRUE(CrossEntropyForwardBackward(MakeTensor(x, s, dt, Gpu()), g_targets, g_losses,
                                              &g_grad, dloss)
                      .ok());
      const auto losses = HostValues(g_losses);
      const auto grad = HostValues(g_grad);
      EXPECT_TRUE(AllClose(losses, HostValues(c_losses), 1e-5, 1e-5));
      EXPECT_TRUE(AllClose(grad, HostValues(c_grad), dt == DType::kF32 ? 1e-4 : 1e-2,
                           dt == DType::kF32 ? 1e-7 : 1e-5));
      for (int64_t r = 0; r < n; ++r) {
        if (tg[r] >= 0) continue;
        ASSERT_EQ(losses[r], 0.0f) << "ignored row " << r;
        for (int64_t j = 0; j < v; ++j) ASSERT_EQ(grad[r * v + j], 0.0f) << r << "," << j;
      }
      // Each counted row's gradient sums to 0 and its target column is dloss * (p - 1).
      for (int64_t r = 0; r < n; ++r) {
        if (tg[r] < 0) continue;
        double sum = 0;
        for (int64_t j = 0; j < v; ++j) sum += grad[r * v + j];
        EXPECT_NEAR(sum, 0.0, dt == DType::kF32 ? 1e-4 : 5e-2) << "row " << r;
        EXPECT_LT(grad[r * v + tg[r]], 0.0f) << "row " << r;
      }
    }
  }
}

TEST(SftCrossEntropyGpuTest, AMicroBatchWithNothingCountedGivesZeros) {
  LOOM_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const int64_t n = 16, v = 512;
    const Shape s{n, v};
    Tensor logits = MakeTensor(RandomFloats(s.numel(), 61, -3.0f, 3.0f), s, dt, Gpu());
    Tensor targets = *Tensor::FromVectorI32(std::vector<int32_t>(n, -1), {n}).To(Gpu());
    Tensor losses = MakeTensor(std::vector<float>(n, NAN), {n}, DType::kF32, Gpu());
    // dlogits written over the logits, as the model does.
    ASSERT_TRUE(CrossEntropyForwardBackward(logits, targets, losses, &logits, 0.0f).ok());
    EXPECT_EQ(HostValues(losses), std::vector<float>(n, 0.0f));
    EXPECT_EQ(HostValues(logits), std::vector<float>(s.numel(), 0.0f));
  }
}

}  // namespace
}  // namespace loom::ops
