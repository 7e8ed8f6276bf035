// Causal self-attention with grouped-query heads, on the packed qkv activation.
// CPU: batched GEMMs + masked softmax. GPU: a fused, tiled flash-style kernel with online
// softmax; the T x T matrix never reaches global memory; the logsumexp per row is kept for
// backward, which recomputes probabilities tile by tile.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// qkv: [B, T, (NH + 2*NKV) * HD] (NH query heads, then NKV key heads, then NKV value heads);
// query head h reads kv head h / (NH / NKV). out: [B, T, NH * HD]; lse: f32 [B, NH, T]
// (log-sum-exp of the scaled scores of each query row). Scale is 1/sqrt(HD).
// segments (packed examples; null = one sequence per row): i32 [B, T] on qkv's device, ids
// nondecreasing along T; a query attends only to keys of its own segment at or before it
// (block-diagonal causal attention). The CPU refuses ids that decrease; the GPU does not look.
absl::Status AttentionForward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& out,
                              const Tensor& lse, const Tensor* segments = nullptr);
// dout: [B, T, NH * HD]; dqkv: same shape as qkv (overwrite). segments as in the forward.
absl::Status AttentionBackward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                               const Tensor& lse, int n_head, int n_kv_head, const Tensor& dqkv,
                               const Tensor* segments = nullptr);

}  // namespace loom::ops
