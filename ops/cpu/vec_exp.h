// A vectorisable exp for the CPU kernels of attention and cross-entropy: libm's expf is a call
// per element, which dominates a softmax over thousands of columns; this one is plain
// arithmetic that the compiler turns into SIMD code inside `#pragma omp simd` loops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace loom::ops::cpu {

// exp(x) for x <= ~88 as 2^n * exp(r), r = x - n ln2 with |r| <= ln2 / 2, exp(r) by a degree-7
// Taylor polynomial: relative error below 2 ulp. Inputs below -87 give ~1e-38 instead of a
// denormal or 0; the kernels only feed it x - max(x), where such terms round away anyway.
inline float VecExp(float x) {
  x = std::max(x, -87.0f);
  const float kLog2e = 1.44269504088896341f;
  const float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * kLog2e + kShift;
  const float n = t - kShift;
  // ln2 split in a part exact in float times any n < 2^8 and the rest.
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t ti;
  std::memcpy(&ti, &t, 4);
  const int32_t e = (ti - 0x4B400000 + 127) << 23;  // 2^n as float bits
  float scale;
  std::memcpy(&scale, &e, 4);
  return p * scale;
}
// The double instantiations of the kernels (used by gradient checks) want full precision.
inline double VecExp(double x) { return std::exp(x); }

}  // namespace loom::ops::cpu
