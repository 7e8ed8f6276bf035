// Causal GQA attention on the CPU: forward against naive double loops (crossing the kernel's
// 64-row blocks), the backward against finite differences in double for MHA and GQA, GQA as
// MHA with shared K/V, overwrite semantics, and argument errors.
#include "ops/attention.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
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

// Direct definition: out[b, i, h] = sum_{j <= i} softmax_j(q_i . k_j / sqrt(hd)) v_j.
void NaiveAttention(const std::vector<float>& qkv, const Dims& d, std::vector<double>* out,
                    std::vector<double>* lse) {
  out->assign(d.b * d.t * d.nh * d.hd, 0.0);
  lse->assign(d.b * d.nh * d.t, 0.0);
  const int64_t w = d.width();
  for (int64_t bi = 0; bi < d.b; ++bi) {
    for (int h = 0; h < d.nh; ++h) {
      const int g = h / (d.nh / d.nkv);
      for (int64_t i = 0; i < d.t; ++i) {
        std::vector<double> s(i + 1);
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double acc = 0.0;
          for (int c = 0; c < d.hd; ++c) {
            acc += static_cast<double>(qkv[(bi * d.t + i) * w + h * d.hd + c]) *
                   qkv[(bi * d.t + j) * w + (d.nh + g) * d.hd + c];
          }
          s[j] = acc / std::sqrt(static_cast<double>(d.hd));
          mx = std::max(mx, s[j]);
        }
        double sum = 0.0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        (*lse)[(bi * d.nh + h) * d.t + i] = mx + std::log(sum);
        for (int c = 0; c < d.hd; ++c) {
          double acc = 0.0;
          for (int64_t j = 0; j <= i; ++j) {
            acc += s[j] / sum * qkv[(bi * d.t + j) * w + (d.nh + d.nkv + g) * d.hd + c];
          }
          (*out)[(bi * d.t + i) * d.nh * d.hd + h * d.hd + c] = acc;
        }
      }
    }
  }
}

TEST(AttentionTest, ForwardMatchesNaiveLoopsAcrossBlocks) {
  for (const Dims& d : {Dims{2, 7, 3, 3, 8}, Dims{2, 130, 4, 2, 16}, Dims{1, 65, 4, 1, 8}}) {
    SCOPED_TRACE(::testing::Message()
                 << "B" << d.b << " T" << d.t << " NH" << d.nh << " NKV" << d.nkv << " HD" << d.hd);
    const auto x = RandomFloats(d.b * d.t * d.width(), 1, -2.0f, 2.0f);
    Tensor out = ZerosF32({d.b, d.t, d.nh * d.hd}), lse = ZerosF32({d.b, d.nh, d.t});
    ASSERT_TRUE(
        AttentionForward(Tensor::FromVector(x, {d.b, d.t, d.width()}), d.nh, d.nkv, out, lse).ok());
    std::vector<double> ro, rl;
    NaiveAttention(x, d, &ro, &rl);
    EXPECT_TRUE(AllClose(Floats(out), ro, 1e-5, 1e-6));
    EXPECT_TRUE(AllClose(Floats(lse), rl, 1e-5, 1e-6));
  }
}

// L = <out, g>; dqkv from the double backward against central differences. The second case
// has T > 64, so query blocks, key ranges and the GQA sum over a group of 3 are all exercised.
TEST(AttentionTest, BackwardMatchesFiniteDifferences) {
  for (const Dims& d : {Dims{2, 6, 2, 2, 4}, Dims{1, 67, 3, 1, 2}}) {
    SCOPED_TRACE(::testing::Message() << "T" << d.t << " NH" << d.nh << " NKV" << d.nkv);
    const int64_t n_out = d.b * d.t * d.nh * d.hd;
    auto qkv = RandomDoubles(d.b * d.t * d.width(), 2, -1.5, 1.5);
    const auto g = RandomDoubles(n_out, 3);
    std::vector<double> out(n_out), lse(d.b * d.nh * d.t);
    auto loss = [&]() {
      cpu::AttentionForward<double>(qkv.data(), d.b, d.t, d.nh, d.nkv, d.hd, out.data(),
                                    lse.data());
      return Dot(out, g);
    };
    loss();
    std::vector<double> dqkv(qkv.size(), 1e30);  // overwritten, never read
    cpu::AttentionBackward<double>(g.data(), qkv.data(), out.data(), lse.data(), d.b, d.t, d.nh,
                                   d.nkv, d.hd, dqkv.data());
    EXPECT_TRUE(GradientMatches(loss, &qkv, dqkv, 1e-6, 1e-8));
  }
}

// GQA with one kv head == MHA whose kv heads are copies of it; the GQA dK/dV are the sums of
// the MHA ones over the group.
TEST(AttentionTest, GroupedQueryEqualsMultiHeadWithSharedKV) {
  const int64_t b = 2, t = 70;
  const int nh = 4, hd = 8;
  const Dims gqa{b, t, nh, 1, hd}, mha{b, t, nh, nh, hd};
  const auto x = RandomFloats(b * t * gqa.width(), 4);
  std::vector<float> xm(b * t * mha.width());
  for (int64_t tok = 0; tok < b * t; ++tok) {
    const float* src = &x[tok * gqa.width()];
    float* dst = &xm[tok * mha.width()];
    for (int c = 0; c < nh * hd; ++c) dst[c] = src[c];
    for (int h = 0; h < nh; ++h) {
      for (int c = 0; c < hd; ++c) {
        dst[(nh + h) * hd + c] = src[nh * hd + c];
        dst[(2 * nh + h) * hd + c] = src[(nh + 1) * hd + c];
      }
    }
  }
  const auto dy = RandomFloats(b * t * nh * hd, 5);
  Tensor qg = Tensor::FromVector(x, {b, t, gqa.width()});
  Tensor qm = Tensor::FromVector(xm, {b, t, mha.width()});
  Tensor og = ZerosF32({b, t, nh * hd}), lg = ZerosF32({b, nh, t});
  Tensor om = ZerosF32({b, t, nh * hd}), lm = ZerosF32({b, nh, t});
  ASSERT_TRUE(AttentionForward(qg, nh, 1, og, lg).ok());
  ASSERT_TRUE(AttentionForward(qm, nh, nh, om, lm).ok());
  EXPECT_TRUE(AllClose(Floats(og), Floats(om), 1e-6, 1e-7));
  EXPECT_TRUE(AllClose(Floats(lg), Floats(lm), 1e-6, 1e-7));

  Tensor dg = ZerosF32(qg.shape()), dm = ZerosF32(qm.shape());
  Tensor dout = Tensor::FromVector(dy, {b, t, nh * hd});
  ASSERT_TRUE(AttentionBackward(dout, qg, og, lg, nh, 1, dg).ok());
  ASSERT_TRUE(AttentionBackward(dout, qm, om, lm, nh, nh, dm).ok());
  const auto vg = Floats(dg), vm = Floats(dm);
  std::vector<float> expect(vg.size());
  for (int64_t tok = 0; tok < b * t; ++tok) {
    const float* src = &vm[tok * mha.width()];
    float* dst = &expect[tok * gqa.width()];
    for (int c = 0; c < nh * hd; ++c) dst[c] = src[c];
    for (int c = 0; c < hd; ++c) {
      float dk = 0.0f, dv = 0.0f;
      for (int h = 0; h < nh; ++h) {
        dk += src[(nh + h) * hd + c];
        dv += src[(2 * nh + h) * hd + c];
      }
      dst[nh * hd + c] = dk;
      dst[(nh + 1) * hd + c] = dv;
    }
  }
  EXPECT_TRUE(AllClose(vg, expect, 1e-5, 1e-6));
}

// dqkv is overwritten (whatever it held does not matter) and repeated calls agree bit for bit.
TEST(AttentionTest, BackwardOverwritesAndIsDeterministic) {
  const Dims d{2, 100, 4, 2, 8};
  const auto x = RandomFloats(d.b * d.t * d.width(), 6);
  const auto dy = RandomFloats(d.b * d.t * d.nh * d.hd, 7);
  Tensor qkv = Tensor::FromVector(x, {d.b, d.t, d.width()});
  Tensor out = ZerosF32({d.b, d.t, d.nh * d.hd}), lse = ZerosF32({d.b, d.nh, d.t});
  ASSERT_TRUE(AttentionForward(qkv, d.nh, d.nkv, out, lse).ok());
  Tensor dout = Tensor::FromVector(dy, out.shape());
  Tensor d1 = ZerosF32(qkv.shape());
  Tensor d2 = Tensor::FromVector(std::vector<float>(qkv.numel(), NAN), qkv.shape());
  ASSERT_TRUE(AttentionBackward(dout, qkv, out, lse, d.nh, d.nkv, d1).ok());
  ASSERT_TRUE(AttentionBackward(dout, qkv, out, lse, d.nh, d.nkv, d2).ok());
  EXPECT_EQ(Floats(d1), Floats(d2));
}

void ExpectError(const absl::Status& s, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s << " / " << p;
}

TEST(AttentionTest, BadArgumentsAreNamed) {
  const int64_t b = 2, t = 5;
  Tensor qkv = ZerosF32({b, t, 8 * 4});  // nh 4, nkv 2, hd 4
  Tensor out = ZerosF32({b, t, 16}), lse = ZerosF32({b, 4, t});
  EXPECT_TRUE(AttentionForward(qkv, 4, 2, out, lse).ok());
  ExpectError(AttentionForward(qkv, 4, 3, out, lse),
              {"AttentionForward", "n_head (4)", "multiple of n_kv_head (3)"});
  ExpectError(AttentionForward(qkv, 3, 1, out, lse), {"AttentionForward", "qkv", "5 * HD"});
  ExpectError(AttentionForward(qkv, 4, 2, ZerosF32({b, t, 12}), lse),
              {"AttentionForward", "out", "[2, 5, 16]", "[2, 5, 12]"});
  ExpectError(AttentionForward(qkv, 4, 2, out, ZerosF32({b, t, 4})),
              {"AttentionForward", "lse", "[2, 4, 5]"});
  ExpectError(AttentionForward(ZerosF32({b * t, 32}), 4, 2, out, lse), {"qkv", "[B, T"});
  ExpectError(AttentionBackward(out, qkv, out, lse, 4, 2, ZerosF32({b, t, 31})),
              {"AttentionBackward", "dqkv"});
  ExpectError(AttentionBackward(ZerosF32({b, t, 15}), qkv, out, lse, 4, 2, ZerosF32(qkv.shape())),
              {"AttentionBackward", "dout"});
  Tensor bq = *Tensor::Zeros(qkv.shape(), DType::kBF16, CpuDevice());
  ExpectError(AttentionForward(bq, 4, 2, out, lse), {"AttentionForward", "CPU", "f32"});
}

}  // namespace
}  // namespace loom::ops
