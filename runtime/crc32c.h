// CRC-32C (Castagnoli polynomial, reflected 0x82F63B78), the checksum of TFRecord / TensorBoard
// event files and of loom's checkpoint shards.
//
// Crc32c(data, n, crc) extends a running checksum: Crc32c(b, nb, Crc32c(a, na)) equals the
// checksum of a followed by b, and Crc32c(data, n) starts a new one. On x86-64 CPUs with SSE4.2
// (checked once at run time) the crc32 instruction does the work; elsewhere a slicing-by-8
// table does. Both give the same values; the tests check one against the other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace loom {

uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t Crc32c(std::string_view bytes, uint32_t crc = 0) {
  return Crc32c(bytes.data(), bytes.size(), crc);
}

// TFRecord stores a rotated, offset CRC because a CRC over bytes that embed CRCs is weak.
constexpr uint32_t kCrc32cMaskDelta = 0xa282ead8u;
constexpr uint32_t MaskedCrc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kCrc32cMaskDelta;
}
constexpr uint32_t UnmaskCrc32c(uint32_t masked) {
  uint32_t rot = masked - kCrc32cMaskDelta;
  return (rot >> 17) | (rot << 15);
}

namespace crc32c_internal {
// The two implementations behind Crc32c, exposed so tests can compare them.
uint32_t Portable(const void* data, size_t n, uint32_t crc);
// False where the CPU (or the build target) has no crc32 instruction.
bool HardwareAvailable();
// Only call when HardwareAvailable().
uint32_t Hardware(const void* data, size_t n, uint32_t crc);
}  // namespace crc32c_internal

}  // namespace loom
