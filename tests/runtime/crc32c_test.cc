#include "runtime/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace loom {
namespace {

using crc32c_internal::Hardware;
using crc32c_internal::HardwareAvailable;
using crc32c_internal::Portable;

// The check value of the CRC catalogue and the iSCSI vectors of RFC 3720, appendix B.4.
struct Vector {
  const char* name;
  std::vector<uint8_t> bytes;
  uint32_t crc;
};
std::vector<Vector> KnownVectors() {
  std::vector<Vector> v;
  v.push_back({"123456789", std::vector<uint8_t>({'1', '2', '3', '4', '5', '6', '7', '8', '9'}),
               0xE3069283u});
  v.push_back({"32 zeros", std::vector<uint8_t>(32, 0x00), 0x8A9136AAu});
  v.push_back({"32 0xff", std::vector<uint8_t>(32, 0xff), 0x62A8AB43u});
  std::vector<uint8_t> up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<uint8_t>(i);
    down[i] = static_cast<uint8_t>(31 - i);
  }
  v.push_back({"0..31", up, 0x46DD794Eu});
  v.push_back({"31..0", down, 0x113FDB5Cu});
  v.push_back({"empty", {}, 0u});
  return v;
}

TEST(Crc32cTest, KnownVectors) {
  for (const Vector& v : KnownVectors()) {
    EXPECT_EQ(Crc32c(v.bytes.data(), v.bytes.size()), v.crc) << v.name;
    EXPECT_EQ(Portable(v.bytes.data(), v.bytes.size(), 0), v.crc) << v.name;
    if (HardwareAvailable()) {
      EXPECT_EQ(Hardware(v.bytes.data(), v.bytes.size(), 0), v.crc) << v.name;
    }
  }
  EXPECT_EQ(Crc32c(std::string_view("123456789")), 0xE3069283u);
}

TEST(Crc32cTest, ExtendingEqualsOneShot) {
  std::string s = "The quick brown fox jumps over the lazy dog, twice: the quick brown fox.";
  uint32_t whole = Crc32c(s);
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    uint32_t first = Crc32c(s.data(), cut);
    EXPECT_EQ(Crc32c(s.data() + cut, s.size() - cut, first), whole) << "cut at " << cut;
    EXPECT_EQ(Portable(s.data() + cut, s.size() - cut, Portable(s.data(), cut, 0)), whole);
  }
}

TEST(Crc32cTest, HardwareMatchesPortableOnEveryLengthAndAlignment) {
  if (!HardwareAvailable()) GTEST_SKIP() << "no SSE4.2 crc32 instruction on this CPU";
  std::mt19937 gen(7);
  std::vector<uint8_t> buf(600);
  for (auto& b : buf) b = static_cast<uint8_t>(gen());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n + offset <= 520; ++n) {
      uint32_t seed = static_cast<uint32_t>(gen());
      ASSERT_EQ(Hardware(buf.data() + offset, n, seed), Portable(buf.data() + offset, n, seed))
          << "offset " << offset << " length " << n;
    }
  }
}

TEST(Crc32cTest, DetectsSingleBitFlips) {
  std::vector<uint8_t> buf(64, 0x5a);
  uint32_t base = Crc32c(buf.data(), buf.size());
  for (size_t bit = 0; bit < buf.size() * 8; ++bit) {
    buf[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_NE(Crc32c(buf.data(), buf.size()), base) << "bit " << bit;
    buf[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
}

TEST(Crc32cTest, MaskAsTfRecordDoes) {
  // ((crc >> 15) | (crc << 17)) + 0xa282ead8; the rotation of 0xE3069283 is 0x2507c60d.
  EXPECT_EQ(MaskedCrc32c(0xE3069283u), 0x2507c60du + 0xa282ead8u);
  EXPECT_EQ(MaskedCrc32c(0), 0xa282ead8u);
  for (uint32_t crc : {0u, 1u, 0xE3069283u, 0xffffffffu, 0x80000000u, 0x12345678u}) {
    EXPECT_EQ(UnmaskCrc32c(MaskedCrc32c(crc)), crc);
    EXPECT_NE(MaskedCrc32c(crc), crc);
  }
}

}  // namespace
}  // namespace loom
