// Rotary position embedding (RoPE), "rotate half" convention (as Megatron and Hugging Face
// LLaMA): for each head, pairs (x[i], x[i + HD/2]) rotate by angle pos * theta^(-2i/HD).
// Applied in place to the q and k parts of a packed qkv activation.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// qkv: [B, T, (NH + 2*NKV) * HD], layout per token: NH query heads, NKV key heads, NKV value
// heads, each HD wide. Rotates q and k in place; v untouched. The position of token (b, t) is
// pos_offset + t, or pos_offset + positions[b, t] when a per-token position array is given
// (i32 [B, T] on qkv's device, every value >= 0: packed fine-tuning samples whose positions
// restart at each document, the global positions of a context-parallel rank's chunks).
absl::Status RopeForward(const Tensor& qkv, int n_head, int n_kv_head, float theta,
                         int64_t pos_offset = 0, const Tensor* positions = nullptr);
// dqkv: same layout; applies the inverse rotation to the q and k gradients in place.
absl::Status RopeBackward(const Tensor& dqkv, int n_head, int n_kv_head, float theta,
                          int64_t pos_offset = 0, const Tensor* positions = nullptr);

}  // namespace loom::ops
