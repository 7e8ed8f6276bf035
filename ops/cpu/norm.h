// CPU reference kernels for LayerNorm and RMSNorm (ops/norm.h), on raw row-major arrays.
// Templates on the element type T: ops/norm.cc runs them in float; the gradient tests run the
// very same code in double so finite differences can check the backward to ~1e-7.
// Statistics (mean, rstd) have type T too; reductions accumulate in double.
// Backwards compute dweight/dbias (accumulate) before dx (overwrite), so dx may alias dout.
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// x, out: [n, c]; weight, bias: [c]; mean, rstd: [n].
template <typename T>
void LayerNormForward(const T* x, const T* weight, const T* bias, double eps, int64_t n, int64_t c,
                      T* out, T* mean, T* rstd);
// residual_out = a + b, then LayerNorm of residual_out.
template <typename T>
void FusedResidualLayerNormForward(const T* a, const T* b, const T* weight, const T* bias,
                                   double eps, int64_t n, int64_t c, T* residual_out, T* out,
                                   T* mean, T* rstd);
// dx = (overwrite); dweight, dbias += .
template <typename T>
void LayerNormBackward(const T* dout, const T* x, const T* weight, const T* mean, const T* rstd,
                       int64_t n, int64_t c, T* dx, T* dweight, T* dbias);

template <typename T>
void RMSNormForward(const T* x, const T* weight, double eps, int64_t n, int64_t c, T* out, T* rstd);
template <typename T>
void FusedResidualRMSNormForward(const T* a, const T* b, const T* weight, double eps, int64_t n,
                                 int64_t c, T* residual_out, T* out, T* rstd);
// dx = (overwrite); dweight += .
template <typename T>
void RMSNormBackward(const T* dout, const T* x, const T* weight, const T* rstd, int64_t n,
                     int64_t c, T* dx, T* dweight);

}  // namespace loom::ops::cpu
