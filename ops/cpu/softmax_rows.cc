#include "ops/cpu/softmax_rows.h"

#include <algorithm>
#include <cstring>
#include <limits>

// Function multiversioning: GCC on x86-64 only (the attribute is an ELF ifunc).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LOOM_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LOOM_SIMD_CLONES
#endif

namespace loom::ops::cpu {
namespace {

// exp(x) = 2^n * exp(r), r = x - n ln2 with |r| <= ln2 / 2, exp(r) by a degree-7 Taylor
// polynomial (relative error below 2 ulp). Valid for x in [-87, 88].
inline float VecExp(float x) {
  x = std::max(x, -87.0f);
  const float kLog2e = 1.44269504088896341f;
  const float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * kLog2e + kShift;
  const float n = t - kShift;
  // ln2 split into a part exact in float times any |n| < 2^8 and the rest.
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

}  // namespace

LOOM_SIMD_CLONES float RowMax(const float* x, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  return mx;
}

LOOM_SIMD_CLONES float ExpInPlaceAndSum(float* x, int64_t n, float shift) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    x[j] = VecExp(x[j] - shift);
    sum += x[j];
  }
  return sum;
}

LOOM_SIMD_CLONES double SumExpShifted(const float* x, int64_t n, float shift) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += VecExp(x[j] - shift);
  return sum;
}

LOOM_SIMD_CLONES void ScaledExpShifted(const float* x, float* out, int64_t n, float shift,
                                       float scale) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = VecExp(x[j] - shift) * scale;
}

}  // namespace loom::ops::cpu
