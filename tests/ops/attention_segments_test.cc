// Block-diagonal causal attention (segments, ops/attention.h) on the CPU: one segment changes
// nothing (bit for bit, forward and backward); with several segments each one's output and
// log-sum-exp equal plain causal attention run on that segment alone (crossing the kernel's
// 64-row blocks); the backward against finite differences in double; ids that decrease and a
// wrong shape are refused by name.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/attention.h"
#include "ops/cpu/attention.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Dot;
using ::loom::testing::GradientMatches;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;

std::vector<float> Floats(const Tensor& t) { return *t.ToFloatVector(); }
Tensor ZerosF32(const Shape& s) { return *Tensor::Zeros(s, DType::kF32, CpuDevice()); }

struct Dims {
  int64_t b, t;
  int nh, nkv, hd;
  int64_t width() const { return static_cast<int64_t>(nh + 2 * nkv) * hd; }
};

Tensor Ids(const std::vector<int32_t>& ids, int64_t b, int64_t t) {
  Tensor s = *Tensor::Empty(Shape{b, t}, DType::kI32, CpuDevice());
  std::copy(ids.begin(), ids.end(), s.data_as<int32_t>());
  return s;
}

// Segment ids for each row of the batch from a list of segment start positions.
std::vector<int32_t> FromStarts(const std::vector<std::vector<int64_t>>& starts, int64_t t) {
  std::vector<int32_t> ids;
  for (const auto& row : starts) {
    int32_t id = 0;
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t s : row) id += (s == i && i > 0) ? 1 : 0;
      ids.push_back(id);
    }
  }
  return ids;
}

TEST(AttentionSegmentsTest, OneSegmentChangesNothing) {
  for (const Dims& d : {Dims{2, 7, 3, 3, 8}, Dims{2, 130, 4, 2, 16}}) {
    const Shape qs{d.b, d.t, d.width()}, os{d.b, d.t, int64_t{d.nh} * d.hd}, ls{d.b, d.nh, d.t};
    const auto x = RandomFloats(qs.numel(), 1, -2.0f, 2.0f);
    const auto dy = RandomFloats(os.numel(), 2);
    const Tensor qkv = Tensor::FromVector(x, qs);
    const Tensor one = Ids(std::vector<int32_t>(d.b * d.t, 3), d.b, d.t);
    Tensor o1 = ZerosF32(os), l1 = ZerosF32(ls), o2 = ZerosF32(os), l2 = ZerosF32(ls);
    ASSERT_TRUE(AttentionForward(qkv, d.nh, d.nkv, o1, l1).ok());
    ASSERT_TRUE(AttentionForward(qkv, d.nh, d.nkv, o2, l2, &one).ok());
    EXPECT_EQ(Floats(o1), Floats(o2));
    EXPECT_EQ(Floats(l1), Floats(l2));
    Tensor g1 = ZerosF32(qs), g2 = ZerosF32(qs);
    const Tensor dout = Tensor::FromVector(dy, os);
    ASSERT_TRUE(AttentionBackward(dout, qkv, o1, l1, d.nh, d.nkv, g1).ok());
    ASSERT_TRUE(AttentionBackward(dout, qkv, o1, l1, d.nh, d.nkv, g2, &one).ok());
    EXPECT_EQ(Floats(g1), Floats(g2));
  }
}

// Packed attention == plain causal attention on each segment cut out as its own sequence.
TEST(AttentionSegmentsTest, EachSegmentEqualsItsOwnSequence) {
  const Dims d{2, 150, 4, 2, 8};
  // Row 0: segments crossing and meeting the 64-row blocks (one starts at 64 exactly); row 1:
  // a one-token segment and a long tail.
  const std::vector<std::vector<int64_t>> starts = {{0, 10, 64, 100, 101}, {0, 1, 2, 70}};
  const Shape qs{d.b, d.t, d.width()}, os{d.b, d.t, int64_t{d.nh} * d.hd}, ls{d.b, d.nh, d.t};
  const auto x = RandomFloats(qs.numel(), 4, -2.0f, 2.0f);
  const Tensor seg = Ids(FromStarts(starts, d.t), d.b, d.t);
  Tensor out = ZerosF32(os), lse = ZerosF32(ls);
  ASSERT_TRUE(AttentionForward(Tensor::FromVector(x, qs), d.nh, d.nkv, out, lse, &seg).ok());
  const auto o = Floats(out), l = Floats(lse);
  for (int64_t bi = 0; bi < d.b; ++bi) {
    for (size_t k = 0; k < starts[bi].size(); ++k) {
      const int64_t s = starts[bi][k];
      const int64_t e = k + 1 < starts[bi].size() ? starts[bi][k + 1] : d.t;
      SCOPED_TRACE(::testing::Message() << "row " << bi << " segment [" << s << ", " << e << ")");
      const int64_t n = e - s;
      std::vector<float> part(x.begin() + (bi * d.t + s) * d.width(),
                              x.begin() + (bi * d.t + e) * d.width());
      Tensor po = ZerosF32({1, n, int64_t{d.nh} * d.hd}), pl = ZerosF32({1, d.nh, n});
      ASSERT_TRUE(
          AttentionForward(Tensor::FromVector(part, {1, n, d.width()}), d.nh, d.nkv, po, pl).ok());
      const int64_t ow = int64_t{d.nh} * d.hd;
      std::vector<double> got_o(o.begin() + (bi * d.t + s) * ow, o.begin() + (bi * d.t + e) * ow);
      std::vector<double> got_l;
      for (int h = 0; h < d.nh; ++h) {
        for (int64_t i = s; i < e; ++i) got_l.push_back(l[(bi * d.nh + h) * d.t + i]);
      }
      const auto want_o = Floats(po), want_l = Floats(pl);
      EXPECT_TRUE(AllClose(want_o, got_o, 1e-5, 1e-6));
      EXPECT_TRUE(AllClose(want_l, got_l, 1e-5, 1e-6));
    }
  }
}

TEST(AttentionSegmentsTest, BackwardMatchesFiniteDifferences) {
  for (const Dims& d : {Dims{2, 9, 2, 2, 4}, Dims{1, 70, 3, 1, 2}}) {
    SCOPED_TRACE(::testing::Message() << "T" << d.t << " NH" << d.nh << " NKV" << d.nkv);
    const std::vector<std::vector<int64_t>> starts =
        d.b == 2 ? std::vector<std::vector<int64_t>>{{0, 3, 4}, {0, 8}}
                 : std::vector<std::vector<int64_t>>{{0, 30, 64, 66}};
    const std::vector<int32_t> seg = FromStarts(starts, d.t);
    const int64_t n_out = d.b * d.t * d.nh * d.hd;
    auto qkv = RandomDoubles(d.b * d.t * d.width(), 5, -1.5, 1.5);
    const auto g = RandomDoubles(n_out, 6);
    std::vector<double> out(n_out), lse(d.b * d.nh * d.t);
    auto loss = [&]() {
      cpu::AttentionForward<double>(qkv.data(), d.b, d.t, d.nh, d.nkv, d.hd, out.data(), lse.data(),
                                    seg.data());
      return Dot(out, g);
    };
    loss();
    std::vector<double> dqkv(qkv.size(), 1e30);
    cpu::AttentionBackward<double>(g.data(), qkv.data(), out.data(), lse.data(), d.b, d.t, d.nh,
                                   d.nkv, d.hd, dqkv.data(), seg.data());
    EXPECT_TRUE(GradientMatches(loss, &qkv, dqkv, 1e-6, 1e-8));
  }
}

TEST(AttentionSegmentsTest, BadSegmentsAreNamed) {
  const Dims d{1, 4, 2, 2, 4};
  const Shape qs{d.b, d.t, d.width()}, os{d.b, d.t, int64_t{d.nh} * d.hd}, ls{d.b, d.nh, d.t};
  const Tensor qkv = Tensor::FromVector(RandomFloats(qs.numel(), 7), qs);
  Tensor out = ZerosF32(os), lse = ZerosF32(ls);
  const Tensor down = Ids({0, 1, 0, 1}, 1, 4);
  absl::Status s = AttentionForward(qkv, d.nh, d.nkv, out, lse, &down);
  EXPECT_NE(std::string(s.message()).find("segments[0, 2] = 0 is below segments[0, 1] = 1"),
            std::string::npos)
      << s;
  const Tensor wrong = Ids({0, 0, 0}, 1, 3);
  s = AttentionForward(qkv, d.nh, d.nkv, out, lse, &wrong);
  EXPECT_NE(std::string(s.message()).find("segments"), std::string::npos) << s;
  Tensor dq = ZerosF32(qs);
  s = AttentionBackward(ZerosF32(os), qkv, out, lse, d.nh, d.nkv, dq, &down);
  EXPECT_NE(std::string(s.message()).find("AttentionBackward: segments[0, 2]"), std::string::npos)
      << s;
}

}  // namespace
}  // namespace loom::ops
