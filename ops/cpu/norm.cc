#include "ops/cpu/norm.h"

#include <algorithm>
#include <cmath>

namespace loom::ops::cpu {
namespace {

// Column blocks for the parameter-gradient pass: each thread owns whole columns and sums
// every row in order, so dweight/dbias do not depend on the thread count.
constexpr int64_t kColBlock = 64;
// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

template <typename T>
void LayerNormRow(const T* x, const T* weight, const T* bias, double eps, int64_t c, T* out,
                  T* mean_out, T* rstd_out) {
  double sum = 0.0;
  for (int64_t j = 0; j < c; ++j) sum += x[j];
  const double mean = sum / c;
  double var = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    const double d = x[j] - mean;
    var += d * d;
  }
  const double rstd = 1.0 / std::sqrt(var / c + eps);
  const T m = static_cast<T>(mean);
  const T s = static_cast<T>(rstd);
  for (int64_t j = 0; j < c; ++j) out[j] = (x[j] - m) * s * weight[j] + bias[j];
  *mean_out = m;
  *rstd_out = s;
}

template <typename T>
void RMSNormRow(const T* x, const T* weight, double eps, int64_t c, T* out, T* rstd_out) {
  double sumsq = 0.0;
  for (int64_t j = 0; j < c; ++j) sumsq += static_cast<double>(x[j]) * x[j];
  const T s = static_cast<T>(1.0 / std::sqrt(sumsq / c + eps));
  for (int64_t j = 0; j < c; ++j) out[j] = x[j] * s * weight[j];
  *rstd_out = s;
}

// dweight[j] += sum_r dout[r, j] * xhat[r, j]; dbias[j] += sum_r dout[r, j] (dbias optional).
// xhat = (x - mean) * rstd, with mean == nullptr meaning 0 (RMSNorm).
template <typename T>
void NormParamGrads(const T* dout, const T* x, const T* mean, const T* rstd, int64_t n, int64_t c,
                    T* dweight, T* dbias) {
  const int64_t blocks = (c + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kColBlock;
    const int64_t c1 = std::min(c, c0 + kColBlock);
    double dw[kColBlock] = {};
    double db[kColBlock] = {};
    for (int64_t r = 0; r < n; ++r) {
      const T* dy = dout + r * c;
      const T* xr = x + r * c;
      const double m = mean ? static_cast<double>(mean[r]) : 0.0;
      const double s = rstd[r];
      for (int64_t j = c0; j < c1; ++j) {
        dw[j - c0] += static_cast<double>(dy[j]) * ((xr[j] - m) * s);
        db[j - c0] += dy[j];
      }
    }
    for (int64_t j = c0; j < c1; ++j) {
      dweight[j] += static_cast<T>(dw[j - c0]);
      if (dbias) dbias[j] += static_cast<T>(db[j - c0]);
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
    T* res = residual_out + r * c;
    for (int64_t j = 0; j < c; ++j) res[j] = a[r * c + j] + b[r * c + j];
    LayerNormRow<T>(res, weight, bias, eps, c, out + r * c, mean + r, rstd + r);
  }
}

template <typename T>
void LayerNormBackward(const T* dout, const T* x, const T* weight, const T* mean, const T* rstd,
                       int64_t n, int64_t c, T* dx, T* dweight, T* dbias) {
  NormParamGrads(dout, x, mean, rstd, n, c, dweight, dbias);
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) {
    const T* dy = dout + r * c;
    const T* xr = x + r * c;
    const double m = mean[r];
    const double s = rstd[r];
    double sum_g = 0.0;   // sum of dxhat
    double sum_gx = 0.0;  // sum of dxhat * xhat
    for (int64_t j = 0; j < c; ++j) {
      const double g = static_cast<double>(dy[j]) * weight[j];
      sum_g += g;
      sum_gx += g * ((xr[j] - m) * s);
    }
    const double mean_g = sum_g / c;
    const double mean_gx = sum_gx / c;
    T* dxr = dx + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const double g = static_cast<double>(dy[j]) * weight[j];
      const double xhat = (xr[j] - m) * s;
      dxr[j] = static_cast<T>(s * (g - mean_g - xhat * mean_gx));
    }
  }
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
    T* res = residual_out + r * c;
    for (int64_t j = 0; j < c; ++j) res[j] = a[r * c + j] + b[r * c + j];
    RMSNormRow<T>(res, weight, eps, c, out + r * c, rstd + r);
  }
}

template <typename T>
void RMSNormBackward(const T* dout, const T* x, const T* weight, const T* rstd, int64_t n,
                     int64_t c, T* dx, T* dweight) {
  NormParamGrads<T>(dout, x, nullptr, rstd, n, c, dweight, nullptr);
#pragma omp parallel for schedule(static) if (n * c >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) {
    const T* dy = dout + r * c;
    const T* xr = x + r * c;
    const double s = rstd[r];
    double sum_gx = 0.0;
    for (int64_t j = 0; j < c; ++j) {
      sum_gx += static_cast<double>(dy[j]) * weight[j] * (xr[j] * s);
    }
    const double mean_gx = sum_gx / c;
    T* dxr = dx + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const double g = static_cast<double>(dy[j]) * weight[j];
      dxr[j] = static_cast<T>(s * (g - xr[j] * s * mean_gx));
    }
  }
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
