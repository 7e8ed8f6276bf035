#include "ops/cpu/softmax_rows.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "ops/cpu/simd_clones.h"

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
  // 16 running maxima as explicit lanes: a `reduction(max)` over std::max does not vectorise
  // with GCC here, this compare-and-select form does (it is exactly maxps).
  constexpr int kLanes = 16;
  float lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) lanes[k] = x[j + k] > lanes[k] ? x[j + k] : lanes[k];
  }
  float mx = -std::numeric_limits<float>::infinity();
  for (; j < n; ++j) mx = x[j] > mx ? x[j] : mx;
  for (int k = 0; k < kLanes; ++k) mx = lanes[k] > mx ? lanes[k] : mx;
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

// Double sums are accumulated from float partial sums of kChunk terms: a float -> double
// reduction inside the vector loop keeps GCC from vectorising it.
constexpr int64_t kChunk = 256;

LOOM_SIMD_CLONES double SumExpShifted(const float* x, int64_t n, float shift) {
  double sum = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t j1 = std::min(n, j0 + kChunk);
    float part = 0.0f;
#pragma omp simd reduction(+ : part)
    for (int64_t j = j0; j < j1; ++j) part += VecExp(x[j] - shift);
    sum += part;
  }
  return sum;
}

LOOM_SIMD_CLONES double ExpShiftedAndSum(const float* x, float* out, int64_t n, float shift,
                                         const float* prefetch) {
  double sum = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t j1 = std::min(n, j0 + kChunk);
    if (prefetch) {
      for (int64_t j = j0; j < j1; j += 16) __builtin_prefetch(prefetch + j);  // 64-byte lines
    }
    float part = 0.0f;
#pragma omp simd reduction(+ : part)
    for (int64_t j = j0; j < j1; ++j) {
      const float e = VecExp(x[j] - shift);
      out[j] = e;
      part += e;
    }
    sum += part;
  }
  return sum;
}

LOOM_SIMD_CLONES void SoftmaxBackwardRow(const float* p, float* ds, int64_t n, float d) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - d);
}

LOOM_SIMD_CLONES void ScaleInPlace(float* x, int64_t n, float scale) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= scale;
}

}  // namespace loom::ops::cpu
