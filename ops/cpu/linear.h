// CPU reference for ops/linear.h: row-major GEMMs through OpenBLAS. Templates on the element
// type: float is what dispatch uses, double lets the gradient checks run this exact code in
// double precision. Pointers are raw and dims already checked by ops/linear.cc.
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// c[M, N] = alpha * op(a) @ op(b) + beta * c; op(a) is [M, K] (a stored [K, M] when trans_a),
// op(b) is [K, N] (b stored [N, K] when trans_b). Dims must fit in a BLAS int.
template <typename T>
void Gemm(const T* a, bool trans_a, const T* b, bool trans_b, T* c, int64_t m, int64_t n, int64_t k,
          T alpha, T beta);

// out[N, OC] = inp[N, IC] @ weight[OC, IC]^T + bias (bias may be null). With pre_gelu non-null,
// pre_gelu receives that value and out = GeLU(pre_gelu).
template <typename T>
void LinearForward(const T* inp, const T* weight, const T* bias, T* out, T* pre_gelu, int64_t n,
                   int64_t ic, int64_t oc);

// dinp = dout @ weight (overwrite; skipped when null); dweight += dout^T @ inp;
// dbias += column sums of dout (skipped when null).
template <typename T>
void LinearBackward(const T* dout, const T* inp, const T* weight, T* dinp, T* dweight, T* dbias,
                    int64_t n, int64_t ic, int64_t oc);

}  // namespace loom::ops::cpu
