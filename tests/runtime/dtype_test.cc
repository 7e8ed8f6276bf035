#include "runtime/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace loom {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t Even(uint16_t a, uint16_t b) { return (a & 1u) ? b : a; }

TEST(DTypeTest, SizesNamesAndParsing) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kU16), 2u);
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kU16}) {
    auto parsed = ParseDType(DTypeName(t));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, t);
  }
  auto bad = ParseDType("fp8");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'fp8'"), absl::string_view::npos);
}

// F16BitsToFloat against the definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m for e = 0.
TEST(F16Test, DecodesEveryPatternByDefinition) {
  for (uint32_t h = 0; h < 65536; ++h) {
    uint32_t e = (h >> 10) & 31, m = h & 1023;
    float got = F16BitsToFloat(static_cast<uint16_t>(h));
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) {
      if (m == 0) {
        EXPECT_EQ(got, sign * std::numeric_limits<float>::infinity()) << h;
      } else {
        EXPECT_TRUE(std::isnan(got)) << h;
        EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;
      }
      continue;
    }
    double want = e == 0 ? sign * std::ldexp(m, -24) : sign * std::ldexp(1024 + m, int(e) - 25);
    ASSERT_EQ(static_cast<double>(got), want) << "h=0x" << std::hex << h;
    ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;  // -0 stays -0
  }
}

TEST(F16Test, EveryPatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = F16BitsToFloat(static_cast<uint16_t>(h));
    uint16_t back = FloatToF16Bits(f);
    if (std::isnan(f)) {
      EXPECT_EQ(back & 0x7c00u, 0x7c00u) << h;
      EXPECT_NE(back & 0x03ffu, 0u) << "NaN 0x" << std::hex << h << " became infinity";
      EXPECT_EQ(back & 0x8000u, h & 0x8000u) << h;
    } else {
      ASSERT_EQ(back, h) << "h=0x" << std::hex << h << " value " << f;
    }
  }
}

// Between every two neighbouring halves (subnormal, normal, and the last finite one against
// 65536, which is where rounding goes to infinity): the midpoint rounds to the even neighbour
// and the floats either side of it round to the nearer one.
TEST(F16Test, RoundsToNearestEvenBetweenEveryNeighbourPair) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    for (uint32_t sign : {0u, 0x8000u}) {
      uint16_t lo = static_cast<uint16_t>(sign | h), hi = static_cast<uint16_t>(sign | (h + 1));
      double lo_v = F16BitsToFloat(lo);
      double hi_v = (h + 1 == 0x7c00) ? (sign ? -65536.0 : 65536.0) : F16BitsToFloat(hi);
      float mid = static_cast<float>((lo_v + hi_v) / 2);  // exact: 12 significant bits
      ASSERT_EQ(static_cast<double>(mid), (lo_v + hi_v) / 2);
      float toward_lo = std::nextafter(mid, static_cast<float>(lo_v));
      float toward_hi = std::nextafter(mid, static_cast<float>(hi_v) * 2);
      ASSERT_EQ(FloatToF16Bits(mid), Even(lo, hi)) << "midpoint " << mid;
      ASSERT_EQ(FloatToF16Bits(toward_lo), lo) << toward_lo;
      ASSERT_EQ(FloatToF16Bits(toward_hi), hi) << toward_hi;
    }
  }
}

TEST(F16Test, HandPickedValues) {
  EXPECT_EQ(FloatToF16Bits(1.0f), 0x3c00);
  EXPECT_EQ(FloatToF16Bits(1.0f + 0x1p-11f), 0x3c00);       // tie, down to even
  EXPECT_EQ(FloatToF16Bits(1.0f + 3 * 0x1p-11f), 0x3c02);   // tie, up to even
  EXPECT_EQ(FloatToF16Bits(2049.0f), FloatToF16Bits(2048.0f));
  EXPECT_EQ(F16BitsToFloat(FloatToF16Bits(2051.0f)), 2052.0f);
  EXPECT_EQ(FloatToF16Bits(65504.0f), 0x7bff);               // largest finite
  EXPECT_EQ(FloatToF16Bits(65519.99f), 0x7bff);
  EXPECT_EQ(FloatToF16Bits(65520.0f), 0x7c00);               // tie to the even "65536" = inf
  EXPECT_EQ(FloatToF16Bits(1e10f), 0x7c00);
  EXPECT_EQ(FloatToF16Bits(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToF16Bits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(FloatToF16Bits(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(FloatToF16Bits(-0.0f), 0x8000);
  EXPECT_EQ(FloatToF16Bits(0x1p-24f), 0x0001);               // smallest subnormal
  EXPECT_EQ(FloatToF16Bits(0x1p-25f), 0x0000);               // tie with zero, to even
  EXPECT_EQ(FloatToF16Bits(0x1.0002p-25f), 0x0001);          // just above the tie
  EXPECT_EQ(FloatToF16Bits(3 * 0x1p-25f), 0x0002);           // tie between 1 and 2 ulps
  EXPECT_EQ(FloatToF16Bits(-1e-30f), 0x8000);                // underflow keeps the sign
  EXPECT_EQ(FloatToF16Bits(FromBits(0x00000001u)), 0x0000);  // float subnormal
  EXPECT_EQ(FloatToF16Bits(0x1.ffcp-15f), 0x0400);           // rounds up into the normals
  uint16_t nan = FloatToF16Bits(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(F16BitsToFloat(nan)));
  // A float NaN whose payload lives only in the low 13 bits must not become infinity.
  EXPECT_TRUE(std::isnan(F16BitsToFloat(FloatToF16Bits(FromBits(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(F16BitsToFloat(FloatToF16Bits(FromBits(0xff800001u)))));
}

TEST(Bf16Test, EveryPatternDecodesAndRoundTrips) {
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = Bf16BitsToFloat(static_cast<uint16_t>(b));
    ASSERT_EQ(Bits(f), b << 16);
    uint16_t back = FloatToBf16Bits(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16BitsToFloat(back))) << "NaN 0x" << std::hex << b;
      EXPECT_EQ(back & 0x8000u, b & 0x8000u) << b;
    } else {
      ASSERT_EQ(back, b) << "b=0x" << std::hex << b;
    }
  }
}

// bf16 is the top half of a float, so the midpoint of bf16 neighbours b and b+1 is the float
// with bits (b << 16) | 0x8000, for every finite b including the largest (whose upper
// neighbour is infinity).
TEST(Bf16Test, RoundsToNearestEvenBetweenEveryNeighbourPair) {
  for (uint32_t h = 0; h < 0x7f80; ++h) {
    for (uint32_t sign : {0u, 0x8000u}) {
      uint16_t lo = static_cast<uint16_t>(sign | h), hi = static_cast<uint16_t>(sign | (h + 1));
      uint32_t mid = (static_cast<uint32_t>(lo) << 16) | 0x8000u;
      ASSERT_EQ(FloatToBf16Bits(FromBits(mid)), Even(lo, hi)) << std::hex << mid;
      ASSERT_EQ(FloatToBf16Bits(FromBits(mid - 1)), lo) << std::hex << mid - 1;
      ASSERT_EQ(FloatToBf16Bits(FromBits(mid + 1)), hi) << std::hex << mid + 1;
    }
  }
}

TEST(Bf16Test, HandPickedValues) {
  EXPECT_EQ(FloatToBf16Bits(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16Bits(1.0f + 0x1p-8f), 0x3f80);      // tie, down to even
  EXPECT_EQ(FloatToBf16Bits(1.0f + 3 * 0x1p-8f), 0x3f82);  // tie, up to even
  EXPECT_EQ(FloatToBf16Bits(std::numeric_limits<float>::max()), 0x7f80);  // overflow to inf
  EXPECT_EQ(FloatToBf16Bits(-std::numeric_limits<float>::max()), 0xff80);
  EXPECT_EQ(FloatToBf16Bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBf16Bits(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBf16Bits(FromBits(0x00018000u)), 0x0002);  // subnormal tie, up to even
  EXPECT_EQ(FloatToBf16Bits(FromBits(0x00008000u)), 0x0000);  // subnormal tie, down to zero
  // NaNs whose payload would be truncated away stay NaN (and keep their sign).
  EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(FromBits(0x7f800001u)))));
  EXPECT_EQ(FloatToBf16Bits(FromBits(0xff800001u)) & 0x8000u, 0x8000u);
  EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(FromBits(0xffffffffu)))));
}

TEST(DTypeTest, StorageWrappers) {
  EXPECT_EQ(ToFloat(ToBf16(-2.5f)), -2.5f);
  EXPECT_EQ(ToFloat(ToF16(0.333251953125f)), 0.333251953125f);
  EXPECT_EQ(DTypeOf<bf16>::value, DType::kBF16);
  EXPECT_EQ(DTypeOf<f16>::value, DType::kF16);
  EXPECT_EQ(sizeof(bf16), 2u);
  EXPECT_EQ(sizeof(f16), 2u);
}

}  // namespace
}  // namespace loom
