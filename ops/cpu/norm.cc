#include "ops/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/simd_clones.h"

namespace loom::ops::cpu {
namespace {

// Column blocks of the final, ordered reduction of the parameter-gradient partials.
constexpr int64_t kColBlock = 64;
// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// ---- row kernels: inline templates; float goes through the multiversioned wrappers below ----

// Sums accumulate in double (the reference's accuracy); `omp simd` lets them vectorise.
template <typename T>
LOOM_SIMD_INLINE void LayerNormRowT(const T* x, const T* weight, const T* bias, double eps,
                                    int64_t c, T* out, T* mean_out, T* rstd_out) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < c; ++j) sum += x[j];
  const double mean = sum / c;
  double var = 0.0;
#pragma omp simd reduction(+ : var)
  for (int64_t j = 0; j < c; ++j) {
    const double d = x[j] - mean;
    var += d * d;
  }
  const T m = static_cast<T>(mean);
  const T s = static_cast<T>(1.0 / std::sqrt(var / c + eps));
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) out[j] = (x[j] - m) * s * weight[j] + bias[j];
  *mean_out = m;
  *rstd_out = s;
}

template <typename T>
LOOM_SIMD_INLINE void RMSNormRowT(const T* x, const T* weight, double eps, int64_t c, T* out,
                                  T* rstd_out) {
  double sumsq = 0.0;
#pragma omp simd reduction(+ : sumsq)
  for (int64_t j = 0; j < c; ++j) sumsq += static_cast<double>(x[j]) * x[j];
  const T s = static_cast<T>(1.0 / std::sqrt(sumsq / c + eps));
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) out[j] = x[j] * s * weight[j];
  *rstd_out = s;
}

template <typename T>
LOOM_SIMD_INLINE void AddRowT(const T* a, const T* b, int64_t c, T* out) {
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) out[j] = a[j] + b[j];
}

// One row of a backward. Adds dout * xhat (and dout, LayerNorm) to the partial column sums pw
// (pb) of the row's chunk, then writes dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with
// g = dout * weight, xhat = (x - m) * rstd (RMSNorm: m = 0, no mean(g) term). The whole row is
// read before dx is written, so dx may alias dout.
template <typename T, bool kLayer>
LOOM_SIMD_INLINE void NormBackwardRowT(const T* dy, const T* x, const T* weight, double m, double s,
                                       int64_t c, T* dx, double* pw, double* pb) {
  double sum_g = 0.0, sum_gx = 0.0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
  for (int64_t j = 0; j < c; ++j) {
    const double d = dy[j];
    const double xhat = (x[j] - m) * s;
    const double g = d * weight[j];
    sum_g += g;
    sum_gx += g * xhat;
    pw[j] += d * xhat;
    if constexpr (kLayer) pb[j] += d;
  }
  const double mean_g = kLayer ? sum_g / c : 0.0;
  const double mean_gx = sum_gx / c;
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) {
    const double g = static_cast<double>(dy[j]) * weight[j];
    dx[j] = static_cast<T>(s * (g - mean_g - ((x[j] - m) * s) * mean_gx));
  }
}

LOOM_SIMD_CLONES void LayerNormRowF(const float* x, const float* weight, const float* bias,
                                    double eps, int64_t c, float* out, float* mean, float* rstd) {
  LayerNormRowT(x, weight, bias, eps, c, out, mean, rstd);
}
LOOM_SIMD_CLONES void RMSNormRowF(const float* x, const float* weight, double eps, int64_t c,
                                  float* out, float* rstd) {
  RMSNormRowT(x, weight, eps, c, out, rstd);
}
LOOM_SIMD_CLONES void AddRowF(const float* a, const float* b, int64_t c, float* out) {
  AddRowT(a, b, c, out);
}
LOOM_SIMD_CLONES void LayerNormBackwardRowF(const float* dy, const float* x, const float* weight,
                                            double m, double s, int64_t c, float* dx, double* pw,
                                            double* pb) {
  NormBackwardRowT<float, true>(dy, x, weight, m, s, c, dx, pw, pb);
}
LOOM_SIMD_CLONES void RMSNormBackwardRowF(const float* dy, const float* x, const float* weight,
                                          double s, int64_t c, float* dx, double* pw) {
  NormBackwardRowT<float, false>(dy, x, weight, 0.0, s, c, dx, pw, nullptr);
}

// Overloads: float -> the multiversioned wrappers, double (gradient checks) -> the templates.
void LayerNormRow(const float* x, const float* w, const float* b, double eps, int64_t c, float* out,
                  float* mean, float* rstd) {
  LayerNormRowF(x, w, b, eps, c, out, mean, rstd);
}
void LayerNormRow(const double* x, const double* w, const double* b, double eps, int64_t c,
                  double* out, double* mean, double* rstd) {
  LayerNormRowT(x, w, b, eps, c, out, mean, rstd);
}
void RMSNormRow(const float* x, const float* w, double eps, int64_t c, float* out, float* rstd) {
  RMSNormRowF(x, w, eps, c, out, rstd);
}
void RMSNormRow(const double* x, const double* w, double eps, int64_t c, double* out,
                double* rstd) {
  RMSNormRowT(x, w, eps, c, out, rstd);
}
void AddRow(const float* a, const float* b, int64_t c, float* out) { AddRowF(a, b, c, out); }
void AddRow(const double* a, const double* b, int64_t c, double* out) { AddRowT(a, b, c, out); }
template <bool kLayer>
void NormBackwardRow(const float* dy, const float* x, const float* w, double m, double s, int64_t c,
                     float* dx, double* pw, double* pb) {
  if constexpr (kLayer) {
    LayerNormBackwardRowF(dy, x, w, m, s, c, dx, pw, pb);
  } else {
    RMSNormBackwardRowF(dy, x, w, s, c, dx, pw);
  }
}
template <bool kLayer>
void NormBackwardRow(const double* dy, const double* x, const double* w, double m, double s,
                     int64_t c, double* dx, double* pw, double* pb) {
  NormBackwardRowT<double, kLayer>(dy, x, w, m, s, c, dx, pw, pb);
}

// Both backwards in one pass over dout and x: chunks of kRowChunk rows (in parallel) each
// write their rows' dx and their own fp64 partial column sums; the partials are then added in
// chunk order. The result does not depend on the thread count.
constexpr int64_t kRowChunk = 64;

template <typename T, bool kLayer>
void NormBackward(const T* dout, const T* x, const T* weight, const T* mean, const T* rstd,
                  int64_t n, int64_t c, T* dx, T* dweight, T* dbias) {
  const int64_t chunks = (n + kRowChunk - 1) / kRowChunk;
  const int64_t stride = kLayer ? 2 * c : c;  // per chunk: dweight partials, then dbias
  std::vector<double> partial(static_cast<size_t>(chunks * stride), 0.0);
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    double* pw = partial.data() + ch * stride;
    double* pb = kLayer ? pw + c : nullptr;
    for (int64_t r = ch * kRowChunk; r < std::min(n, (ch + 1) * kRowChunk); ++r) {
      const double m = kLayer ? static_cast<double>(mean[r]) : 0.0;
      NormBackwardRow<kLayer>(dout + r * c, x + r * c, weight, m, rstd[r], c, dx + r * c, pw, pb);
    }
  }
  const int64_t blocks = (c + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (chunks * c >= kMinParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kColBlock;
    const int64_t width = std::min(kColBlock, c - c0);
    double sw[kColBlock] = {};
    double sb[kColBlock] = {};
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const double* pw = partial.data() + ch * stride + c0;
      for (int64_t j = 0; j < width; ++j) sw[j] += pw[j];
      if constexpr (kLayer) {
        for (int64_t j = 0; j < width; ++j) sb[j] += pw[c + j];
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      dweight[c0 + j] += static_cast<T>(sw[j]);
      if constexpr (kLayer) dbias[c0 + j] += static_cast<T>(sb[j]);
    }
  }
}

}  // namespace

template <typename T>
void LayerNormForward(const T* x, const T* weight, const T* bias, double eps, int64_t n, int64_t c,
                      T* out, T* mean, T* rstd) {
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) {
    LayerNormRow(x + r * c, weight, bias, eps, c, out + r * c, mean + r, rstd + r);
  }
}

template <typename T>
void FusedResidualLayerNormForward(const T* a, const T* b, const T* weight, const T* bias,
                                   double eps, int64_t n, int64_t c, T* residual_out, T* out,
                                   T* mean, T* rstd) {
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) {
    AddRow(a + r * c, b + r * c, c, residual_out + r * c);
    LayerNormRow(residual_out + r * c, weight, bias, eps, c, out + r * c, mean + r, rstd + r);
  }
}

template <typename T>
void LayerNormBackward(const T* dout, const T* x, const T* weight, const T* mean, const T* rstd,
                       int64_t n, int64_t c, T* dx, T* dweight, T* dbias) {
  NormBackward<T, true>(dout, x, weight, mean, rstd, n, c, dx, dweight, dbias);
}

template <typename T>
void RMSNormForward(const T* x, const T* weight, double eps, int64_t n, int64_t c, T* out,
                    T* rstd) {
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) RMSNormRow(x + r * c, weight, eps, c, out + r * c, rstd + r);
}

template <typename T>
void FusedResidualRMSNormForward(const T* a, const T* b, const T* weight, double eps, int64_t n,
                                 int64_t c, T* residual_out, T* out, T* rstd) {
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) {
    AddRow(a + r * c, b + r * c, c, residual_out + r * c);
    RMSNormRow(residual_out + r * c, weight, eps, c, out + r * c, rstd + r);
  }
}

template <typename T>
void RMSNormBackward(const T* dout, const T* x, const T* weight, const T* rstd, int64_t n,
                     int64_t c, T* dx, T* dweight) {
  NormBackward<T, false>(dout, x, weight, nullptr, rstd, n, c, dx, dweight, nullptr);
}

#define LOOM_INSTANTIATE_NORM(T)                                                                 \
  template void LayerNormForward<T>(const T*, const T*, const T*, double, int64_t, int64_t, T*,  \
                                    T*, T*);                                                     \
  template void FusedResidualLayerNormForward<T>(const T*, const T*, const T*, const T*, double, \
                                                 int64_t, int64_t, T*, T*, T*, T*);              \
  template void LayerNormBackward<T>(const T*, const T*, const T*, const T*, const T*, int64_t,  \
                                     int64_t, T*, T*, T*);                                       \
  template void RMSNormForward<T>(const T*, const T*, double, int64_t, int64_t, T*, T*);         \
  template void FusedResidualRMSNormForward<T>(const T*, const T*, const T*, double, int64_t,    \
                                               int64_t, T*, T*, T*);                             \
  template void RMSNormBackward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, T*, \
                                   T*);
LOOM_INSTANTIATE_NORM(float)
LOOM_INSTANTIATE_NORM(double)
#undef LOOM_INSTANTIATE_NORM

}  // namespace loom::ops::cpu
