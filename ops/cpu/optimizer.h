// CPU reference for ops/optimizer.h: AdamW, sum of squares, scale and casts over flat buffers.
// The CPU backend is fp32, but bf16 gradients / copies are accepted too so that the CUDA
// mixed-precision paths have a reference to be checked against.
#pragma once

#include <cstdint>

#include "ops/optimizer.h"
#include "runtime/dtype.h"

namespace loom::ops::cpu {

// AdamW on n elements. G: float or bf16 (gradients); C: float or bf16 (copy-out of the updated
// params, skipped when null).
template <typename G, typename C>
void AdamWUpdate(float* params, const G* grads, float* m, float* v, int64_t n, const AdamWParams& p,
                 C* params_copy);

// Sum of x^2 in double; the summation order is fixed (chunks of a constant size, partials
// added in chunk order), so the result does not depend on the thread count.
template <typename T>
double SumOfSquares(const T* x, int64_t n);

template <typename T>
void Scale(T* x, int64_t n, float factor);

// dst[i] = src[i] converted through fp32 (round to nearest even, runtime/dtype.h).
template <typename S, typename D>
void Cast(const S* src, D* dst, int64_t n);

}  // namespace loom::ops::cpu
