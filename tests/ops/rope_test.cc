// RoPE on the CPU: forward against a naive double-precision rotation, the backward as the
// gradient of the forward (finite differences in double), round trips, position offsets, and
// argument errors.
#include "ops/rope.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/rope.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Dot;
using ::loom::testing::GradientMatches;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;

std::vector<float> Floats(const Tensor& t) { return *t.ToFloatVector(); }

// Reference: angles in double straight from the formula (not the float recipe of the kernel).
std::vector<double> NaiveRope(const std::vector<float>& qkv, int64_t b, int64_t t, int nh, int nkv,
                              int hd, double theta, int64_t pos_offset) {
  std::vector<double> out(qkv.begin(), qkv.end());
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * hd;
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t tt = 0; tt < t; ++tt) {
      for (int h = 0; h < nh + nkv; ++h) {
        for (int i = 0; i < hd / 2; ++i) {
          const double ang = (pos_offset + tt) * std::pow(theta, -2.0 * i / hd);
          const int64_t o = (bi * t + tt) * row + static_cast<int64_t>(h) * hd;
          const double x1 = qkv[o + i], x2 = qkv[o + i + hd / 2];
          out[o + i] = x1 * std::cos(ang) - x2 * std::sin(ang);
          out[o + i + hd / 2] = x2 * std::cos(ang) + x1 * std::sin(ang);
        }
      }
    }
  }
  return out;
}

TEST(RopeTest, ForwardMatchesNaiveRotationAndLeavesValuesAlone) {
  const int64_t b = 2, t = 9;
  const int nh = 4, nkv = 2, hd = 16;
  const int64_t width = (nh + 2 * nkv) * hd;
  const auto x = RandomFloats(b * t * width, 1);
  Tensor qkv = Tensor::FromVector(x, {b, t, width});
  ASSERT_TRUE(RopeForward(qkv, nh, nkv, 10000.0f, /*pos_offset=*/3).ok());
  const auto got = Floats(qkv);
  EXPECT_TRUE(AllClose(got, NaiveRope(x, b, t, nh, nkv, hd, 10000.0, 3), 1e-5, 1e-6));
  // The value heads (the last nkv * hd columns of each token) are bit-for-bit untouched.
  for (int64_t tok = 0; tok < b * t; ++tok) {
    for (int64_t c = (nh + nkv) * hd; c < width; ++c) {
      ASSERT_EQ(got[tok * width + c], x[tok * width + c]) << "token " << tok << " col " << c;
    }
  }
}

TEST(RopeTest, PositionZeroIsIdentityAndOffsetsShiftPositions) {
  const int64_t t = 6;
  const int nh = 2, nkv = 1, hd = 8;
  const int64_t width = (nh + 2 * nkv) * hd;
  const auto x = RandomFloats(t * width, 2);
  // Offset 4 on tokens [0, 6) == positions [4, 10) of a longer sequence.
  std::vector<float> longer = RandomFloats(10 * width, 9);
  for (int64_t i = 0; i < t * width; ++i) longer[4 * width + i] = x[i];
  Tensor a = Tensor::FromVector(x, {1, t, width});
  Tensor l = Tensor::FromVector(longer, {1, 10, width});
  ASSERT_TRUE(RopeForward(a, nh, nkv, 500.0f, 4).ok());
  ASSERT_TRUE(RopeForward(l, nh, nkv, 500.0f, 0).ok());
  const auto av = Floats(a), lv = Floats(l);
  EXPECT_EQ(av, std::vector<float>(lv.begin() + 4 * width, lv.end()));
  // Position 0 of the long run is untouched (angle 0).
  for (int64_t c = 0; c < width; ++c) EXPECT_EQ(lv[c], longer[c]);
}

TEST(RopeTest, BackwardUndoesForward) {
  const int64_t b = 1, t = 33;
  const int nh = 3, nkv = 3, hd = 32;
  const int64_t width = (nh + 2 * nkv) * hd;
  const auto x = RandomFloats(b * t * width, 3);
  Tensor qkv = Tensor::FromVector(x, {b, t, width});
  ASSERT_TRUE(RopeForward(qkv, nh, nkv, 10000.0f, 100).ok());
  ASSERT_TRUE(RopeBackward(qkv, nh, nkv, 10000.0f, 100).ok());
  EXPECT_TRUE(AllClose(Floats(qkv), x, 1e-5, 1e-6));
}

// L = <rope(x), g>: dL/dx must be RopeBackward(g).
TEST(RopeTest, BackwardMatchesFiniteDifferences) {
  const int64_t b = 2, t = 5;
  const int nh = 2, nkv = 1, hd = 6;
  const int64_t n = b * t * (nh + 2 * nkv) * hd;
  auto x = RandomDoubles(n, 4);
  const auto g = RandomDoubles(n, 5);
  auto loss = [&]() {
    std::vector<double> y = x;
    cpu::RopeApply<double>(y.data(), b, t, nh, nkv, hd, 100.0f, 7, /*inverse=*/false);
    return Dot(y, g);
  };
  std::vector<double> dx = g;
  cpu::RopeApply<double>(dx.data(), b, t, nh, nkv, hd, 100.0f, 7, /*inverse=*/true);
  EXPECT_TRUE(GradientMatches(loss, &x, dx));
}

void ExpectError(const absl::Status& s, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s << " / " << p;
}

TEST(RopeTest, BadArgumentsAreNamed) {
  Tensor qkv = *Tensor::Zeros({2, 3, 64}, DType::kF32, CpuDevice());  // 8 heads of 8 if 4/2
  EXPECT_TRUE(RopeForward(qkv, 4, 2, 10000.0f).ok());
  ExpectError(RopeForward(qkv, 3, 2, 10000.0f), {"RopeForward", "n_head (3)", "n_kv_head (2)"});
  ExpectError(RopeForward(qkv, 5, 1, 10000.0f), {"RopeForward", "qkv", "[2, 3, 64]", "7 * HD"});
  Tensor odd = *Tensor::Zeros({1, 2, 3 * 5}, DType::kF32, CpuDevice());  // HD = 5
  ExpectError(RopeBackward(odd, 1, 1, 10000.0f), {"RopeBackward", "HD = 5", "even"});
  ExpectError(RopeForward(qkv, 4, 2, 0.0f), {"theta"});
  ExpectError(RopeForward(qkv, 4, 2, 10000.0f, -1), {"pos_offset"});
  ExpectError(RopeForward(qkv, 0, 2, 10000.0f), {"n_head (0)"});
  Tensor bf = *Tensor::Zeros({2, 3, 64}, DType::kBF16, CpuDevice());
  ExpectError(RopeForward(bf, 4, 2, 10000.0f), {"RopeForward", "f32"});
}

}  // namespace
}  // namespace loom::ops
