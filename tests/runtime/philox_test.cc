#include "runtime/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "tests/runtime/philox_contracted.h"

namespace loom {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void ExpectPhilox(Uint32x4 counter, Uint32x2 key, Uint32x4 want) {
  Uint32x4 got = Philox4x32(counter, key);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(got.v[i], want.v[i]) << "word " << i << std::hex << ": got 0x" << got.v[i]
                                   << ", want 0x" << want.v[i];
  }
}

// Known-answer vectors published with Random123 (kat_vectors, philox4x32 with 10 rounds).
TEST(PhiloxTest, KnownAnswers) {
  ExpectPhilox({{0, 0, 0, 0}}, {{0, 0}},
               {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
  ExpectPhilox({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
               {{0xffffffffu, 0xffffffffu}},
               {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
  ExpectPhilox({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
               {{0xa4093822u, 0x299f31d0u}},
               {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
}

TEST(PhiloxTest, BlockUsesSeedAsKeyAndBlockAsCounter) {
  uint64_t seed = 0x299f31d0a4093822ull, block = 0x85a308d3243f6a88ull;
  Uint32x4 a = PhiloxBlock(seed, block);
  Uint32x4 b = Philox4x32({{0x243f6a88u, 0x85a308d3u, 0, 0}}, {{0xa4093822u, 0x299f31d0u}});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.v[i], b.v[i]);
  // Both halves of the seed and of the index matter.
  EXPECT_NE(UniformAt(1, 0), UniformAt(1 + (1ull << 32), 0));
  EXPECT_NE(UniformAt(1, 0), UniformAt(1, 4ull << 32));
}

TEST(PhiloxTest, UniformIsTheTop24BitsOfItsLane) {
  Uint32x4 x = PhiloxBlock(7, 3);
  for (int lane = 0; lane < 4; ++lane) {
    float u = UniformAt(7, 12 + lane);
    EXPECT_EQ(u, static_cast<float>(x.v[lane] >> 8) / 16777216.0f);
  }
  EXPECT_EQ(WordToUniform(0), 0.0f);
  EXPECT_LT(WordToUniform(0xffffffffu), 1.0f);
}

TEST(PhiloxTest, UniformStatistics) {
  const int n = 100000;
  std::vector<float> u(n);
  FillUniform(u.data(), n, 42, 0);
  double sum = 0, sum2 = 0;
  int bins[10] = {0};
  for (float v : u) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LT(v, 1.0f);
    sum += v;
    sum2 += static_cast<double>(v) * v;
    bins[static_cast<int>(v * 10)]++;
  }
  double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.005);     // sd of the mean: 0.0009
  EXPECT_NEAR(var, 1.0 / 12, 0.002);  // sd: 0.0002
  for (int b = 0; b < 10; ++b) EXPECT_NEAR(bins[b], n / 10, 500) << "bin " << b;  // sd: 95
}

TEST(PhiloxTest, NormalStatistics) {
  const int n = 100000;
  std::vector<float> z(n);
  FillNormal(z.data(), n, 0.0f, 1.0f, 2024, 0);
  double sum = 0, sum2 = 0, sum4 = 0;
  int within1 = 0, within2 = 0;
  for (float v : z) {
    ASSERT_TRUE(std::isfinite(v));
    ASSERT_LE(std::fabs(v), 5.78f);
    sum += v;
    sum2 += static_cast<double>(v) * v;
    sum4 += std::pow(static_cast<double>(v), 4);
    within1 += std::fabs(v) < 1.0f;
    within2 += std::fabs(v) < 2.0f;
  }
  double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.015);                      // sd of the mean: 0.0032
  EXPECT_NEAR(std::sqrt(var), 1.0, 0.01);             // sd: 0.0022
  EXPECT_NEAR(sum4 / n, 3.0, 0.1);                    // kurtosis, sd: 0.031
  EXPECT_NEAR(within1 / double(n), 0.682689, 0.006);  // sd: 0.0015
  EXPECT_NEAR(within2 / double(n), 0.954500, 0.003);  // sd: 0.0007

  // The even and odd elements of one Box-Muller pair are uncorrelated.
  double cross = 0;
  for (int i = 0; i + 1 < n; i += 2) cross += static_cast<double>(z[i]) * z[i + 1];
  EXPECT_NEAR(cross / (n / 2), 0.0, 0.02);  // sd: 0.0045
}

TEST(PhiloxTest, LogIsAccurate) {
  // Every exponent, both sides of the sqrt(2) split, and the ends of the range.
  std::vector<uint32_t> ns = {1u, 2u, 3u, 5u, 1u << 24, (1u << 24) - 1};
  for (int e = 0; e < 24; ++e) {
    uint32_t p = 1u << e;
    for (uint32_t n : {p, p + p / 3, p + p / 2 - 1, p + p / 2, p + (p * 3) / 4, 2 * p - 1}) {
      if (n >= 1) ns.push_back(n);
    }
  }
  for (uint32_t n = 1; n < (1u << 24); n += 4099) ns.push_back(n);
  for (uint32_t n : ns) {
    double want = std::log(static_cast<double>(n) / 16777216.0);
    float got = philox_internal::LogUnit24(n);
    EXPECT_NEAR(got, want, 4e-7 * std::fabs(want) + 1e-7) << "n=" << n;
    EXPECT_LE(got, 0.0f) << "n=" << n;
  }
}

TEST(PhiloxTest, SinCosAreAccurateInEveryQuadrant) {
  const double kTwoPi = 6.283185307179586476925286766559;
  for (uint32_t k = 0; k < (1u << 24); k += 997) {
    float s, c;
    philox_internal::SinCosTurn24(k, &s, &c);
    double angle = kTwoPi * k / 16777216.0;
    ASSERT_NEAR(s, std::sin(angle), 2.5e-7) << "k=" << k;
    ASSERT_NEAR(c, std::cos(angle), 2.5e-7) << "k=" << k;
  }
  for (uint32_t k : {0u, 1u << 22, 1u << 23, 3u << 22, (1u << 21) - 1, 1u << 21, (1u << 24) - 1}) {
    float s, c;
    philox_internal::SinCosTurn24(k, &s, &c);
    double angle = kTwoPi * k / 16777216.0;
    EXPECT_NEAR(s, std::sin(angle), 2.5e-7) << "k=" << k;
    EXPECT_NEAR(c, std::cos(angle), 2.5e-7) << "k=" << k;
  }
}

// NormalAt is the Box-Muller transform of its two lanes, as a double-precision reference
// computes it from the same Philox words (radius from the first, angle from the second).
TEST(PhiloxTest, NormalMatchesDoublePrecisionBoxMuller) {
  const double kTwoPi = 6.283185307179586476925286766559;
  for (uint64_t index = 0; index < 40000; index += 3) {
    Uint32x4 x = PhiloxBlock(555, index >> 2);
    int pair = (index >> 1) & 1;
    double u1 = ((x.v[2 * pair] >> 8) + 1.0) / 16777216.0;
    double t = (x.v[2 * pair + 1] >> 8) / 16777216.0;
    double r = std::sqrt(-2.0 * std::log(u1));
    double want = (index & 1) ? r * std::sin(kTwoPi * t) : r * std::cos(kTwoPi * t);
    ASSERT_NEAR(NormalAt(555, index), want, 1e-6 * (1.0 + r)) << "index " << index;
  }
}

TEST(PhiloxTest, Normal4AtMatchesNormalAtBitForBit) {
  for (uint64_t block : {0ull, 1ull, 12345ull, (1ull << 40) + 3}) {
    Float4 four = Normal4At(99, block);
    for (int lane = 0; lane < 4; ++lane) {
      EXPECT_EQ(Bits(four.v[lane]), Bits(NormalAt(99, 4 * block + lane)))
          << "block " << block << " lane " << lane;
    }
  }
}

TEST(PhiloxTest, FillNormalIsIndependentOfHowTheRangeIsSplit) {
  // A parameter initialised whole and one initialised in uneven shards (as tensor or pipeline
  // ranks would) must hold the same bits.
  const size_t n = 1003;
  const uint64_t start = 17;  // not a multiple of four
  std::vector<float> whole(n), pieces(n);
  FillNormal(whole.data(), n, 0.5f, 0.02f, 7, start);
  size_t cuts[] = {0, 1, 2, 7, 130, 131, 600, n};
  for (int i = 0; i + 1 < 8; ++i) {
    FillNormal(pieces.data() + cuts[i], cuts[i + 1] - cuts[i], 0.5f, 0.02f, 7, start + cuts[i]);
  }
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(Bits(whole[i]), Bits(pieces[i])) << "element " << i;
    ASSERT_EQ(Bits(whole[i]), Bits(NormalAt(7, start + i, 0.5f, 0.02f))) << "element " << i;
  }
  std::vector<float> u(n);
  FillUniform(u.data(), n, 7, start);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(Bits(u[i]), Bits(UniformAt(7, start + i)));
}

TEST(PhiloxTest, SeedsGiveDifferentStreams) {
  std::vector<float> a(64), b(64);
  FillNormal(a.data(), 64, 0.0f, 1.0f, 1, 0);
  FillNormal(b.data(), 64, 0.0f, 1.0f, 2, 0);
  int same = 0;
  for (int i = 0; i < 64; ++i) same += a[i] == b[i];
  EXPECT_LT(same, 2);
}

// The stream is part of loom's reproducibility contract: every model's initial weights (and so
// every loss curve and checkpoint) follow from it. Changing these values is a breaking change.
// (They agree with a double-precision Box-Muller of the same words to within 5e-8.)
TEST(PhiloxTest, NormalStreamIsPinned) {
  const uint32_t kWant[8] = {0x3f9d54f1u, 0xbfcee92bu, 0x3eede2d1u, 0xbfc7bfcbu,
                               0x3f3e4d4eu, 0x3f2211b4u, 0x3e40d63du, 0x3dd437bfu};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(Bits(NormalAt(1234, i)), kWant[i]) << "index " << i << ": got " << std::hex
                                                 << Bits(NormalAt(1234, i));
  }
}

TEST(PhiloxTest, HostStreamDoesNotDependOnFmaContraction) {
  if (!loom_test::ContractedBuildHasFma()) GTEST_SKIP() << "no FMA build on this architecture";
  if (!__builtin_cpu_supports("fma")) GTEST_SKIP() << "this CPU has no FMA instructions";
  const size_t n = 20000;
  std::vector<float> contracted(n), plain(n);
  loom_test::ContractedNormals(31337, 5, n, 0.1f, 0.02f, contracted.data());
  FillNormal(plain.data(), n, 0.1f, 0.02f, 31337, 5);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(Bits(plain[i]), Bits(contracted[i])) << "element " << i;
}

}  // namespace
}  // namespace loom
