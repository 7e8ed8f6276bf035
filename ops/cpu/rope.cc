#include "ops/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/simd_clones.h"

namespace loom::ops::cpu {
namespace {

// Rotates pairs (x[i], x[i + half]) of `heads` consecutive heads of one token.
template <typename T>
LOOM_SIMD_INLINE void RotateHeadsT(T* tok, int heads, int hd, const T* cs, const T* sn) {
  const int half = hd / 2;
  for (int h = 0; h < heads; ++h) {
    T* x = tok + static_cast<int64_t>(h) * hd;
#pragma omp simd
    for (int i = 0; i < half; ++i) {
      const T x1 = x[i];
      const T x2 = x[i + half];
      x[i] = x1 * cs[i] - x2 * sn[i];
      x[i + half] = x2 * cs[i] + x1 * sn[i];
    }
  }
}

LOOM_SIMD_CLONES void RotateHeadsF(float* tok, int heads, int hd, const float* cs,
                                   const float* sn) {
  RotateHeadsT(tok, heads, hd, cs, sn);
}
void RotateHeads(float* tok, int heads, int hd, const float* cs, const float* sn) {
  RotateHeadsF(tok, heads, hd, cs, sn);
}
void RotateHeads(double* tok, int heads, int hd, const double* cs, const double* sn) {
  RotateHeadsT(tok, heads, hd, cs, sn);
}

}  // namespace

float RopeAngle(int64_t pos, int i, int hd, float theta) {
  const float inv_freq = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * i / hd));
  return static_cast<float>(pos) * inv_freq;
}

// RopeApply with per-token positions: cos/sin of each position in [lo, hi] once (a table
// row per position; when the ids spread wider than there are tokens, a row per token
// instead), then every token rotated with its row.
template <typename T>
void RopeApplyPositions(T* qkv, int64_t b, int64_t t, int nh, int nkv, int hd, float theta,
                        int64_t pos_offset, bool inverse, const int32_t* positions) {
  const int half = hd / 2;
  const int64_t n = b * t;
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * hd;
  const int rotated_heads = nh + nkv;
  if (n == 0) return;
  int64_t lo = positions[0], hi = positions[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min<int64_t>(lo, positions[i]);
    hi = std::max<int64_t>(hi, positions[i]);
  }
  const bool dense = hi - lo + 1 <= n;
  const int64_t rows = dense ? hi - lo + 1 : n;
  std::vector<T> cs(rows * half), sn(rows * half);
  const bool big = n * rotated_heads * hd >= (int64_t{1} << 15);
#pragma omp parallel for schedule(static) if (big)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = pos_offset + (dense ? lo + r : positions[r]);
    for (int i = 0; i < half; ++i) {
      const double angle = RopeAngle(pos, i, hd, theta);
      cs[r * half + i] = static_cast<T>(std::cos(angle));
      sn[r * half + i] = static_cast<T>(inverse ? -std::sin(angle) : std::sin(angle));
    }
  }
#pragma omp parallel for schedule(static) if (big)
  for (int64_t bt = 0; bt < n; ++bt) {
    const int64_t r = dense ? positions[bt] - lo : bt;
    RotateHeads(qkv + bt * row, rotated_heads, hd, cs.data() + r * half, sn.data() + r * half);
  }
}

template <typename T>
void RopeApply(T* qkv, int64_t b, int64_t t, int nh, int nkv, int hd, float theta,
               int64_t pos_offset, bool inverse, const int32_t* positions) {
  if (positions != nullptr) {
    RopeApplyPositions(qkv, b, t, nh, nkv, hd, theta, pos_offset, inverse, positions);
    return;
  }
  const int half = hd / 2;
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * hd;
  const int rotated_heads = nh + nkv;  // q heads then k heads are contiguous at the row start
#pragma omp parallel if (b * t * rotated_heads * hd >= (int64_t{1} << 15))
  {
    std::vector<T> cs(half), sn(half);
#pragma omp for schedule(static)
    for (int64_t tt = 0; tt < t; ++tt) {
      for (int i = 0; i < half; ++i) {
        const double angle = RopeAngle(pos_offset + tt, i, hd, theta);
        cs[i] = static_cast<T>(std::cos(angle));
        sn[i] = static_cast<T>(inverse ? -std::sin(angle) : std::sin(angle));
      }
      for (int64_t bb = 0; bb < b; ++bb) {
        RotateHeads(qkv + (bb * t + tt) * row, rotated_heads, hd, cs.data(), sn.data());
      }
    }
  }
}

template void RopeApply<float>(float*, int64_t, int64_t, int, int, int, float, int64_t, bool,
                               const int32_t*);
template void RopeApply<double>(double*, int64_t, int64_t, int, int, int, float, int64_t, bool,
                                const int32_t*);

}  // namespace loom::ops::cpu
