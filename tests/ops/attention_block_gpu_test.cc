// CUDA vs CPU for ring attention's block step (ops/attention_block.h; label gpu, skips without a
// device), f32 (tight) and bf16 (on inputs rounded to bf16, so the CPU reference sees the same
// values):
//   - BlockPairsMatchCpuKernels: one query block against one key block, for the layouts the
//     ring meets (the diagonal block; cp 2 and cp 4 pairs where some rows see every key, some
//     none, some a prefix) and two extreme ones (every key visible, none visible), with blocks
//     of one, two and three 64-row tiles (some partly filled): the first block (out and lse
//     overwritten; rows that see no key get 0 / -inf), a later block merged into a running
//     result by log-sum-exp, and the backward adding into non-zero dQ and dK/dV buffers.
//     Grouped-query (4:2, 3:1) and multi-head (2:2) heads, HD 64, 128 and 18 (padded, no
//     vector loads).
//   - RingMatchesWholeSequence: every cp rank's queries against every rank's block in ring
//     order (cp 2 and 4), forward merged and backward summed, against whole-sequence attention
//     on the CPU (ops/attention.h), with and without segment ids (boundaries inside a tile, on
//     a chunk edge, a one-token segment), so segments are checked without the CPU block
//     kernels' own segment support.
// Tolerances as attention_gpu_test.cc's (fp32 sums in other orders, exp2f): f32 out 1e-4/5e-5,
// lse 1e-5/1e-4, gradients 1e-4/1e-4; bf16 2e-2 (3e-2 where the ring keeps bf16 state between
// blocks: the running out and the dK/dV accumulators are rounded after every block).
//
// LOOM_GPU_TESTS_ON_TEST_DEVICE=1 runs the f32 cases on the test device (which runs the CPU
// kernels) instead of a GPU: a check of this harness on a machine without one.
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/attention.h"
#include "ops/attention_block.h"
#include "runtime/test_device.h"
#include "tests/ops/gpu_test_util.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::HostValues;
using ::loom::testing::MakeTensor;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

bool OnTestDevice() {
  const char* env = std::getenv("LOOM_GPU_TESTS_ON_TEST_DEVICE");
  return env != nullptr && std::string(env) == "1";
}

// The device under test: the GPU, or the test device for a harness check.
Device* Dut() { return OnTestDevice() ? *TestDevice(0) : ::loom::testing::Gpu(); }

struct Heads {
  int nh, nkv, hd;
  int64_t W() const { return static_cast<int64_t>(nh + 2 * nkv) * hd; }
  int64_t O() const { return static_cast<int64_t>(nh) * hd; }
};

std::vector<Heads> HeadCases() { return {{4, 2, 64}, {3, 1, 18}, {2, 2, 128}}; }

ChunkedPositions RankPositions(int64_t seq_len, int cp, int r) {
  const int64_t c = seq_len / (2 * cp);
  return ChunkedPositions{c, r * c, (2 * cp - 1 - r) * c};
}

struct Pair {
  const char* name;
  ChunkedPositions q, kv;
};

std::vector<Pair> Pairs() {
  return {
      // cp 2 over 384 tokens: chunk 96, blocks of 192 rows (three tiles, the chunk edge inside
      // the second).
      {"cp2_diagonal", RankPositions(384, 2, 0), RankPositions(384, 2, 0)},
      {"cp2_rank1_sees_rank0", RankPositions(384, 2, 1), RankPositions(384, 2, 0)},
      {"cp2_rank0_sees_rank1", RankPositions(384, 2, 0), RankPositions(384, 2, 1)},
      // cp 4 over 384 tokens: chunk 48, blocks of 96 rows (one full tile and one partial).
      {"cp4_diagonal", RankPositions(384, 4, 2), RankPositions(384, 4, 2)},
      {"cp4_rank1_sees_rank3", RankPositions(384, 4, 1), RankPositions(384, 4, 3)},
      {"cp4_rank3_sees_rank0", RankPositions(384, 4, 3), RankPositions(384, 4, 0)},
      // Blocks of 40 rows (one partial tile): every key visible to every query, then none.
      {"all_visible", ChunkedPositions{20, 40, 60}, ChunkedPositions{20, 0, 20}},
      {"none_visible", ChunkedPositions{20, 0, 20}, ChunkedPositions{20, 40, 60}},
  };
}

bool SamePositions(const ChunkedPositions& a, const ChunkedPositions& b) {
  return a.chunk == b.chunk && a.start0 == b.start0 && a.start1 == b.start1;
}

// lse: -inf exactly where the reference is -inf, else within the tolerance.
::testing::AssertionResult LseClose(const std::vector<float>& got, const std::vector<float>& want,
                                    double rtol, double atol) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "lse size mismatch";
  std::vector<float> g, w;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i])) {
      if (got[i] != want[i]) {
        return ::testing::AssertionFailure() << "lse[" << i << "] = " << got[i] << ", want -inf";
      }
      continue;
    }
    g.push_back(got[i]);
    w.push_back(want[i]);
  }
  return AllClose(g, w, rtol, atol);
}

class AttentionBlockGpuTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (OnTestDevice()) {
      if (dt() != DType::kF32) GTEST_SKIP() << "the test device runs the f32 CPU kernels only";
    } else {
      LOOM_SKIP_WITHOUT_CUDA();
    }
  }
  DType dt() const { return GetParam(); }
  bool f32() const { return dt() == DType::kF32; }
  Tensor Cpu(const std::vector<float>& v, const Shape& s) const { return Tensor::FromVector(v, s); }
  Tensor Dev(const std::vector<float>& v, const Shape& s, DType type) const {
    return MakeTensor(v, s, type, Dut());
  }
  Tensor DevNan(const Shape& s, DType type) const {
    return Dev(std::vector<float>(s.numel(), NAN), s, type);
  }
};

TEST_P(AttentionBlockGpuTest, BlockPairsMatchCpuKernels) {
  const int64_t B = 2;
  uint64_t seed = 100;
  for (const Heads& k : HeadCases()) {
    for (const Pair& p : Pairs()) {
      SCOPED_TRACE(::testing::Message()
                   << p.name << " nh " << k.nh << " nkv " << k.nkv << " hd " << k.hd);
      const int64_t T = 2 * p.q.chunk;
      const Shape qs{B, T, k.W()}, os{B, T, k.O()}, ls{B, k.nh, T};
      const bool diagonal = SamePositions(p.q, p.kv);
      const auto xq = RoundTo(RandomFloats(qs.numel(), ++seed, -2.0f, 2.0f), dt());
      const auto xkv = diagonal ? xq : RoundTo(RandomFloats(qs.numel(), ++seed, -2.0f, 2.0f), dt());
      Tensor c_q = Cpu(xq, qs), c_kv = Cpu(xkv, qs);
      Tensor g_q = Dev(xq, qs, dt()), g_kv = diagonal ? g_q : Dev(xkv, qs, dt());

      // First block: out and lse overwritten (NaN before on the device).
      Tensor c_out = *Tensor::Zeros(os, DType::kF32, CpuDevice());
      Tensor c_lse = *Tensor::Zeros(ls, DType::kF32, CpuDevice());
      ASSERT_TRUE(
          AttentionBlockForward(c_q, c_kv, k.nh, k.nkv, p.q, p.kv, true, c_out, c_lse).ok());
      Tensor g_out = DevNan(os, dt()), g_lse = DevNan(ls, DType::kF32);
      ASSERT_TRUE(
          AttentionBlockForward(g_q, g_kv, k.nh, k.nkv, p.q, p.kv, true, g_out, g_lse).ok());
      EXPECT_TRUE(
          AllClose(HostValues(g_out), HostValues(c_out), f32() ? 1e-4 : 2e-2, f32() ? 5e-5 : 2e-2))
          << "first block: out";
      EXPECT_TRUE(LseClose(HostValues(g_lse), HostValues(c_lse), 1e-5, 1e-4)) << "first: lse";

      // A later block merged into a running result: the queries' own (diagonal) block's.
      Tensor s_out = *Tensor::Zeros(os, DType::kF32, CpuDevice());
      Tensor s_lse = *Tensor::Zeros(ls, DType::kF32, CpuDevice());
      ASSERT_TRUE(AttentionBlockForward(c_q, c_q, k.nh, k.nkv, p.q, p.q, true, s_out, s_lse).ok());
      const auto state_out = RoundTo(HostValues(s_out), dt());
      const auto state_lse = HostValues(s_lse);
      c_out = Cpu(state_out, os);
      c_lse = Cpu(state_lse, ls);
      ASSERT_TRUE(
          AttentionBlockForward(c_q, c_kv, k.nh, k.nkv, p.q, p.kv, false, c_out, c_lse).ok());
      g_out = Dev(state_out, os, dt());
      g_lse = Dev(state_lse, ls, DType::kF32);
      ASSERT_TRUE(
          AttentionBlockForward(g_q, g_kv, k.nh, k.nkv, p.q, p.kv, false, g_out, g_lse).ok());
      EXPECT_TRUE(
          AllClose(HostValues(g_out), HostValues(c_out), f32() ? 1e-4 : 2e-2, f32() ? 5e-5 : 2e-2))
          << "merged: out";
      EXPECT_TRUE(LseClose(HostValues(g_lse), HostValues(c_lse), 1e-5, 1e-4)) << "merged: lse";

      // Backward with the merged (final) out and lse, adding into non-zero gradients.
      const auto out_v = RoundTo(HostValues(c_out), dt());
      const auto lse_v = HostValues(c_lse);
      const auto dy = RoundTo(RandomFloats(os.numel(), ++seed), dt());
      const auto dq0 = RoundTo(RandomFloats(qs.numel(), ++seed), dt());
      const auto dkv0 = RoundTo(RandomFloats(qs.numel(), ++seed), dt());
      Tensor c_dq = Cpu(dq0, qs), c_dkv = Cpu(dkv0, qs);
      ASSERT_TRUE(AttentionBlockBackward(Cpu(dy, os), c_q, c_kv, Cpu(out_v, os), Cpu(lse_v, ls),
                                         k.nh, k.nkv, p.q, p.kv, c_dq, c_dkv)
                      .ok());
      Tensor g_dq = Dev(dq0, qs, dt()), g_dkv = Dev(dkv0, qs, dt());
      ASSERT_TRUE(AttentionBlockBackward(Dev(dy, os, dt()), g_q, g_kv, Dev(out_v, os, dt()),
                                         Dev(lse_v, ls, DType::kF32), k.nh, k.nkv, p.q, p.kv, g_dq,
                                         g_dkv)
                      .ok());
      EXPECT_TRUE(
          AllClose(HostValues(g_dq), HostValues(c_dq), f32() ? 1e-4 : 2e-2, f32() ? 1e-4 : 2e-2))
          << "dq";
      EXPECT_TRUE(
          AllClose(HostValues(g_dkv), HostValues(c_dkv), f32() ? 1e-4 : 2e-2, f32() ? 1e-4 : 2e-2))
          << "dkv";
    }
  }
}

// Rows of [b, t, w] (lse: [b * nh, t, 1]) that cp rank r holds: chunk r, then chunk 2cp-1-r.
std::vector<float> LocalRows(const std::vector<float>& full, int64_t b, int64_t t, int64_t w,
                             int cp, int r) {
  const int64_t c = t / (2 * cp);
  std::vector<float> out;
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t chunk : {int64_t{r}, int64_t{2 * cp - 1 - r}}) {
      const float* src = full.data() + (bi * t + chunk * c) * w;
      out.insert(out.end(), src, src + c * w);
    }
  }
  return out;
}

// Segment ids of [B, S]: a new segment at each listed start (nondecreasing ids).
std::vector<float> SegmentIds(int64_t S, const std::vector<std::vector<int64_t>>& starts) {
  std::vector<float> ids;
  for (const auto& row : starts) {
    int id = 0;
    for (int64_t i = 0; i < S; ++i) {
      for (int64_t s : row) id += (s == i && i > 0) ? 1 : 0;
      ids.push_back(static_cast<float>(id));
    }
  }
  return ids;
}

TEST_P(AttentionBlockGpuTest, RingMatchesWholeSequence) {
  const int64_t B = 2, S = 384;
  struct RingCase {
    int cp;
    Heads heads;
    bool segments;
  };
  const std::vector<RingCase> cases = {{2, {4, 2, 64}, false}, {4, {4, 2, 64}, false},
                                       {2, {3, 1, 18}, false}, {2, {4, 2, 64}, true},
                                       {4, {4, 2, 64}, true},  {4, {3, 1, 18}, true}};
  // Boundaries inside a tile (10, 101), on a tile edge (64), on a chunk edge (96), a
  // one-token segment (100) and one at the very end (383).
  const auto ids = SegmentIds(S, {{0, 10, 64, 96, 100, 101, 250}, {0, 1, 200, 383}});
  const double tol_out = f32() ? 1e-4 : 3e-2, tol_grad = f32() ? 1e-4 : 3e-2;
  uint64_t seed = 500;
  for (const RingCase& rc : cases) {
    const Heads& k = rc.heads;
    const int cp = rc.cp;
    SCOPED_TRACE(::testing::Message() << "cp " << cp << " nh " << k.nh << " nkv " << k.nkv << " hd "
                                      << k.hd << (rc.segments ? " segments" : ""));
    const int64_t Tl = S / cp, W = k.W(), O = k.O();
    const auto x = RoundTo(RandomFloats(B * S * W, ++seed, -2.0f, 2.0f), dt());
    const auto dy = RoundTo(RandomFloats(B * S * O, ++seed), dt());
    Tensor c_seg = MakeTensor(ids, Shape{B, S}, DType::kI32, CpuDevice());
    const Tensor* c_segp = rc.segments ? &c_seg : nullptr;
    Tensor full_qkv = Cpu(x, Shape{B, S, W});
    Tensor full_out = *Tensor::Zeros(Shape{B, S, O}, DType::kF32, CpuDevice());
    Tensor full_lse = *Tensor::Zeros(Shape{B, k.nh, S}, DType::kF32, CpuDevice());
    ASSERT_TRUE(AttentionForward(full_qkv, k.nh, k.nkv, full_out, full_lse, c_segp).ok());
    Tensor full_dqkv = *Tensor::Zeros(Shape{B, S, W}, DType::kF32, CpuDevice());
    ASSERT_TRUE(AttentionBackward(Cpu(dy, Shape{B, S, O}), full_qkv, full_out, full_lse, k.nh,
                                  k.nkv, full_dqkv, c_segp)
                    .ok());
    const auto want_out = HostValues(full_out), want_lse = HostValues(full_lse);
    const auto want_dqkv = HostValues(full_dqkv);

    Tensor g_seg = MakeTensor(ids, Shape{B, S}, DType::kI32, Dut());
    const Tensor* g_segp = rc.segments ? &g_seg : nullptr;
    const Shape qs{B, Tl, W}, os{B, Tl, O}, ls{B, k.nh, Tl};
    std::vector<Tensor> q(cp), out(cp), lse(cp), dq(cp), dkv(cp);
    for (int r = 0; r < cp; ++r) {
      q[r] = Dev(LocalRows(x, B, S, W, cp, r), qs, dt());
      out[r] = DevNan(os, dt());
      lse[r] = DevNan(ls, DType::kF32);
      dq[r] = Dev(std::vector<float>(qs.numel(), 0.0f), qs, dt());
      dkv[r] = Dev(std::vector<float>(qs.numel(), 0.0f), qs, dt());
    }
    for (int r = 0; r < cp; ++r) {
      for (int s = 0; s < cp; ++s) {  // ring order: its own block, then r-1, r-2, ...
        const int o = (r - s + cp) % cp;
        const absl::Status st =
            AttentionBlockForward(q[r], q[o], k.nh, k.nkv, RankPositions(S, cp, r),
                                  RankPositions(S, cp, o), s == 0, out[r], lse[r], g_segp);
        if (OnTestDevice() && absl::IsUnimplemented(st)) GTEST_SKIP() << st;
        ASSERT_TRUE(st.ok()) << st;
      }
      EXPECT_TRUE(AllClose(HostValues(out[r]), LocalRows(want_out, B, S, O, cp, r), tol_out,
                           f32() ? 5e-5 : tol_out))
          << "out of rank " << r;
      EXPECT_TRUE(AllClose(HostValues(lse[r]), LocalRows(want_lse, B * k.nh, S, 1, cp, r), 1e-5,
                           f32() ? 1e-4 : 1e-3))
          << "lse of rank " << r;
    }
    for (int r = 0; r < cp; ++r) {
      Tensor dout_r = Dev(LocalRows(dy, B, S, O, cp, r), os, dt());
      for (int s = 0; s < cp; ++s) {
        const int o = (r - s + cp) % cp;
        ASSERT_TRUE(AttentionBlockBackward(dout_r, q[r], q[o], out[r], lse[r], k.nh, k.nkv,
                                           RankPositions(S, cp, r), RankPositions(S, cp, o), dq[r],
                                           dkv[o], g_segp)
                        .ok());
      }
    }
    for (int r = 0; r < cp; ++r) {
      std::vector<float> got = HostValues(dq[r]);
      const std::vector<float> kv = HostValues(dkv[r]);
      for (size_t i = 0; i < got.size(); ++i) got[i] += kv[i];  // disjoint columns
      EXPECT_TRUE(AllClose(got, LocalRows(want_dqkv, B, S, W, cp, r), tol_grad, tol_grad))
          << "dqkv of rank " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, AttentionBlockGpuTest,
                         ::testing::Values(DType::kF32, DType::kBF16), [](const auto& info) {
                           return std::string(info.param == DType::kF32 ? "f32" : "bf16");
                         });

}  // namespace
}  // namespace loom::ops
