// Element types and exact conversions between fp32 and the 16-bit float formats.
// bf16/f16 conversions round to nearest, ties to even, keep NaN a NaN and saturate nothing
// (overflow goes to infinity as IEEE says). They are constexpr-friendly plain functions so the
// CPU reference and the tests share one definition; CUDA kernels use the hardware intrinsics,
// which follow the same rounding rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace loom {

enum class DType : uint8_t { kF32 = 0, kBF16 = 1, kF16 = 2, kI32 = 3, kU16 = 4 };

size_t DTypeSize(DType t);
std::string_view DTypeName(DType t);
absl::StatusOr<DType> ParseDType(std::string_view name);

// Raw 16-bit storage types; arithmetic always happens in fp32.
struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

uint16_t FloatToBf16Bits(float f);
float Bf16BitsToFloat(uint16_t b);
uint16_t FloatToF16Bits(float f);
float F16BitsToFloat(uint16_t h);

inline bf16 ToBf16(float f) { return bf16{FloatToBf16Bits(f)}; }
inline float ToFloat(bf16 b) { return Bf16BitsToFloat(b.bits); }
inline f16 ToF16(float f) { return f16{FloatToF16Bits(f)}; }
inline float ToFloat(f16 h) { return F16BitsToFloat(h.bits); }

// Maps a C++ element type to its DType tag.
template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct DTypeOf<bf16> {
  static constexpr DType value = DType::kBF16;
};
template <>
struct DTypeOf<f16> {
  static constexpr DType value = DType::kF16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kI32;
};
template <>
struct DTypeOf<uint16_t> {
  static constexpr DType value = DType::kU16;
};

}  // namespace loom
