// Ring attention's block step (ops/attention_block.h) without any communication: the sequence
// is cut into 2*cp chunks as context parallelism cuts it (rank r holds chunks r and 2cp-1-r),
// every rank's queries are run against every rank's key block and merged by log-sum-exp, and
// the result must be the whole-sequence causal attention (ops/attention.h) row for row, forward
// (out, lse) and backward (dQ, dK, dV, with dK/dV summed from every rank's queries), for MHA
// and grouped-query heads, for cp 1..3 and with the key blocks met in ring order.
#include "ops/attention_block.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/attention.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::RandomFloats;

Tensor F32(const Shape& s, std::vector<float> v) {
  Tensor t = *Tensor::Zeros(s, DType::kF32, CpuDevice());
  EXPECT_TRUE(t.CopyFromFloats(v).ok());
  return t;
}
std::vector<float> Floats(const Tensor& t) { return *t.ToFloatVector(); }

// Rows of [b, t, w] (or, with `head_major`, of lse [b, nh, t]) that rank r holds.
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

ChunkedPositions PositionsOf(int64_t t, int cp, int r) {
  const int64_t c = t / (2 * cp);
  return ChunkedPositions{c, r * c, (2 * cp - 1 - r) * c};
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, float tol,
                const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1.0f + std::fabs(want[i]))) << what << " at " << i;
  }
}

struct Case {
  int nh, nkv, cp;
};

// Every rank's blocks around the ring against the whole sequence on one rank; `segments` (i32
// [B, T] by global position, empty = none) go to both.
void ExpectRingEqualsWhole(const std::vector<int32_t>& segments) {
  const int64_t B = 2, T = 24;
  const int hd = 8;
  Tensor seg;
  if (!segments.empty()) {
    seg = *Tensor::Zeros(Shape{B, T}, DType::kI32, CpuDevice());
    std::copy(segments.begin(), segments.end(), seg.data_as<int32_t>());
  }
  const Tensor* sp = segments.empty() ? nullptr : &seg;
  for (const Case k : {Case{4, 4, 2}, Case{4, 2, 2}, Case{4, 1, 3}, Case{2, 2, 1}}) {
    SCOPED_TRACE(::testing::Message() << "nh " << k.nh << " nkv " << k.nkv << " cp " << k.cp
                                      << (sp ? " with segments" : ""));
    const int64_t W = (k.nh + 2 * k.nkv) * hd, O = k.nh * hd, Tl = T / k.cp;
    const std::vector<float> qkv = RandomFloats(B * T * W, 11, -1.5f, 1.5f);
    const std::vector<float> dout = RandomFloats(B * T * O, 12);
    // The reference: the whole sequence on one rank.
    Tensor full_qkv = F32(Shape{B, T, W}, qkv);
    Tensor full_out = F32(Shape{B, T, O}, std::vector<float>(B * T * O));
    Tensor full_lse = F32(Shape{B, k.nh, T}, std::vector<float>(B * k.nh * T));
    ASSERT_TRUE(AttentionForward(full_qkv, k.nh, k.nkv, full_out, full_lse, sp).ok());
    Tensor full_dqkv = F32(Shape{B, T, W}, std::vector<float>(B * T * W));
    ASSERT_TRUE(AttentionBackward(F32(Shape{B, T, O}, dout), full_qkv, full_out, full_lse, k.nh,
                                  k.nkv, full_dqkv, sp)
                    .ok());
    // lse as [B * NH, T, 1] rows, so LocalRows picks a rank's positions of every (b, h).
    const std::vector<float> want_lse_all = Floats(full_lse);

    std::vector<Tensor> q(k.cp), out(k.cp), lse(k.cp), dq(k.cp), dkv(k.cp);
    for (int r = 0; r < k.cp; ++r) {
      q[r] = F32(Shape{B, Tl, W}, LocalRows(qkv, B, T, W, k.cp, r));
      out[r] = F32(Shape{B, Tl, O}, std::vector<float>(B * Tl * O, 7.0f));  // overwritten
      lse[r] = F32(Shape{B, k.nh, Tl}, std::vector<float>(B * k.nh * Tl, 7.0f));
      dq[r] = F32(Shape{B, Tl, W}, std::vector<float>(B * Tl * W));
      dkv[r] = F32(Shape{B, Tl, W}, std::vector<float>(B * Tl * W));
    }
    for (int r = 0; r < k.cp; ++r) {
      // Ring order: its own block first, then the one from r-1, r-2, ...
      for (int s = 0; s < k.cp; ++s) {
        const int o = (r - s + k.cp) % k.cp;
        ASSERT_TRUE(AttentionBlockForward(q[r], q[o], k.nh, k.nkv, PositionsOf(T, k.cp, r),
                                          PositionsOf(T, k.cp, o), s == 0, out[r], lse[r], sp)
                        .ok());
      }
      ExpectNear(Floats(out[r]), LocalRows(Floats(full_out), B, T, O, k.cp, r), 1e-5f, "out");
      ExpectNear(Floats(lse[r]), LocalRows(want_lse_all, B * k.nh, T, 1, k.cp, r), 1e-5f, "lse");
    }
    for (int r = 0; r < k.cp; ++r) {
      Tensor dout_r = F32(Shape{B, Tl, O}, LocalRows(dout, B, T, O, k.cp, r));
      for (int s = 0; s < k.cp; ++s) {
        const int o = (r - s + k.cp) % k.cp;
        ASSERT_TRUE(AttentionBlockBackward(dout_r, q[r], q[o], out[r], lse[r], k.nh, k.nkv,
                                           PositionsOf(T, k.cp, r), PositionsOf(T, k.cp, o), dq[r],
                                           dkv[o], sp)
                        .ok());
      }
    }
    for (int r = 0; r < k.cp; ++r) {
      std::vector<float> got = Floats(dq[r]);
      const std::vector<float> kv = Floats(dkv[r]);
      for (size_t i = 0; i < got.size(); ++i) got[i] += kv[i];  // disjoint columns
      ExpectNear(got, LocalRows(Floats(full_dqkv), B, T, W, k.cp, r), 1e-4f, "dqkv");
    }
  }
}

TEST(AttentionBlockTest, BlocksMergedAroundTheRingEqualWholeSequenceAttention) {
  ExpectRingEqualsWhole({});
}

// Packed documents (segment ids by global position): documents that start and end inside a
// chunk, that cross chunk boundaries (so a query's segment starts on another rank's chunk), a
// one-token document, and a second row laid out differently. The blocks must give the
// whole-sequence block-diagonal attention of ops/attention.h for every cp.
TEST(AttentionBlockTest, SegmentsAcrossChunksEqualWholeSequenceBlockDiagonalAttention) {
  std::vector<int32_t> seg;
  for (int i = 0; i < 24; ++i) seg.push_back(i < 5 ? 0 : i < 6 ? 1 : i < 15 ? 2 : i < 21 ? 3 : 4);
  for (int i = 0; i < 24; ++i) seg.push_back(i < 11 ? 7 : i < 13 ? 8 : 9);
  ExpectRingEqualsWhole(seg);
}

TEST(AttentionBlockTest, RefusesSegmentsThatAreNotTheWholeSequenceOrDecrease) {
  Tensor qkv = F32(Shape{1, 8, 24}, std::vector<float>(8 * 24));
  Tensor out = F32(Shape{1, 8, 8}, std::vector<float>(64));
  Tensor lse = F32(Shape{1, 1, 8}, std::vector<float>(8));
  // cp 2 rank 0 holds positions 0-3 and 12-15 of 16: ids of 8 positions cannot cover them.
  const ChunkedPositions r0{4, 0, 12};
  Tensor short_seg = *Tensor::Zeros(Shape{1, 8}, DType::kI32, CpuDevice());
  const absl::Status s = AttentionBlockForward(qkv, qkv, 1, 1, r0, r0, true, out, lse, &short_seg);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("segments: expected the whole sequence's ids"), std::string::npos)
      << s;
  Tensor seg = *Tensor::Zeros(Shape{1, 16}, DType::kI32, CpuDevice());
  seg.data_as<int32_t>()[5] = 3;  // 0 0 0 0 0 3 0 ...: decreases at 6
  const absl::Status t = AttentionBlockForward(qkv, qkv, 1, 1, r0, r0, true, out, lse, &seg);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.message().find("segments[0, 6] = 0 is below segments[0, 5] = 3"), std::string::npos)
      << t;
}

TEST(AttentionBlockTest, RefusesPositionsThatDoNotCoverTheBlock) {
  Tensor qkv = F32(Shape{1, 8, 24}, std::vector<float>(8 * 24));
  Tensor out = F32(Shape{1, 8, 8}, std::vector<float>(64));
  Tensor lse = F32(Shape{1, 1, 8}, std::vector<float>(8));
  const absl::Status s = AttentionBlockForward(qkv, qkv, 1, 1, ChunkedPositions{3, 0, 3},
                                               ChunkedPositions{4, 0, 4}, true, out, lse);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("q_pos"), std::string::npos) << s;
  const absl::Status t = AttentionBlockForward(qkv, qkv, 1, 1, ChunkedPositions{4, 4, 2},
                                               ChunkedPositions{4, 0, 4}, true, out, lse);
  EXPECT_FALSE(t.ok());
}

}  // namespace
}  // namespace loom::ops
