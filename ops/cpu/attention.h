// CPU reference for causal grouped-query attention (ops/attention.h) on the packed qkv layout.
//
// Work is split into (batch, head, block of 64 query rows) tasks run with OpenMP; each task does
// its math with BLAS GEMMs over only the keys the causal mask lets it see (keys [0, end of the
// block)), so about half of the T x T products are skipped. The forward keeps nothing but the
// per-row log-sum-exp; the backward recomputes the probabilities from it.
// Templated on T (float uses sgemm, double dgemm) so the gradient test runs this exact code in
// double precision.
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// qkv: [b, t, (nh + 2*nkv) * hd]; out: [b, t, nh * hd]; lse: [b, nh, t].
// segments: null, or [b, t] ids nondecreasing along t (packed examples): a query then sees the
// keys at or before it back to where its segment begins (block-diagonal causal attention).
template <typename T>
void AttentionForward(const T* qkv, int64_t b, int64_t t, int nh, int nkv, int hd, T* out, T* lse,
                      const int32_t* segments = nullptr);

// dout, out: [b, t, nh * hd]; dqkv: like qkv (overwrite). Parallel over (batch, kv head) so a
// kv head's dK/dV, summed over the query heads of its group, has one writer and a fixed order.
template <typename T>
void AttentionBackward(const T* dout, const T* qkv, const T* out, const T* lse, int64_t b,
                       int64_t t, int nh, int nkv, int hd, T* dqkv,
                       const int32_t* segments = nullptr);

}  // namespace loom::ops::cpu
