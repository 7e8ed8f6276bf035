// Exp for the CPU's elementwise loops: std::exp is a scalar libm call that GCC cannot
// vectorise, which held GeLU and SiLU to ~0.2 GB/s. ExpF is branch-free float arithmetic the
// compiler turns into SIMD: range reduction by ln 2 (split in two constants so the reduced
// argument stays exact), a degree-6 polynomial on [-ln2/2, ln2/2] and the power of two built
// from the exponent bits. Relative error below 2e-7 over [-87, 88]; inputs outside are clamped
// (exp(-87) ~ 1.6e-38 and exp(88) ~ 1.7e38 stand in for 0 and infinity). Exp(double) stays
// std::exp so the double-precision gradient checks keep their full accuracy.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace loom::ops::cpu {

inline __attribute__((always_inline)) float ExpF(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round to nearest by adding and removing 1.5 * 2^23 (no SSE4.1 round instruction needed).
  // The integer is read from the sum's low mantissa bits, not converted from the float: a NaN x
  // (a diverged step, which the trainer's guards then catch) passes the clamp, and converting
  // NaN to int is undefined behaviour (UBSan, scripts/sanitize.sh).
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  uint32_t shifted_bits;  // unsigned: a NaN's bits wrap instead of overflowing
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  const uint32_t bits = (shifted_bits - 0x4B400000u + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

inline float Exp(float x) { return ExpF(x); }
inline double Exp(double x) { return std::exp(x); }

}  // namespace loom::ops::cpu
