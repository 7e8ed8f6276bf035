// The hot row loops of the CPU softmaxes (attention, cross-entropy) in float: max, exp with a
// shift, sums. They are plain arithmetic (a polynomial exp instead of libm's expf call) so the
// compiler vectorises them, and each is compiled for AVX-512, AVX2 and baseline x86-64
// (ops/cpu/simd_clones.h). exp is accurate to 2 ulp; arguments below -87 give ~1e-38 instead of 0.
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// max of x[0, n); -inf when n == 0.
float RowMax(const float* x, int64_t n);
// x[j] = exp(x[j] - shift) for j < n; returns their sum (float accumulation).
float ExpInPlaceAndSum(float* x, int64_t n, float shift);
// sum of exp(x[j] - shift) for j < n, accumulated in double.
double SumExpShifted(const float* x, int64_t n, float shift);
// out[j] = exp(x[j] - shift) for j < n (out may alias x); returns their sum, accumulated in
// double. When `prefetch` is given, the n floats there are pulled into the cache along the way
// (the next row: this loop is compute-bound, the next row's first pass memory-bound).
double ExpShiftedAndSum(const float* x, float* out, int64_t n, float shift,
                        const float* prefetch = nullptr);
// ds[j] = p[j] * (ds[j] - d) for j < n: the softmax backward, with ds holding dP on entry.
void SoftmaxBackwardRow(const float* p, float* ds, int64_t n, float d);
// x[j] *= scale for j < n.
void ScaleInPlace(float* x, int64_t n, float scale);

}  // namespace loom::ops::cpu
