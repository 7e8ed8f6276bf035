// Rotary position embedding (RoPE), "rotate half" convention (as Megatron and Hugging Face
// LLaMA): for each head, pairs (x[i], x[i + HD/2]) rotate by angle pos * theta^(-2i/HD).
// Applied in place to the q and k parts of a packed qkv activation.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// qkv: [B, T, (NH + 2*NKV) * HD], layout per token: NH query heads, NKV key heads, NKV value
// heads, each HD wide. Rotates q and k in place; v untouched. Position of token t is
// pos_offset + t.
absl::Status RopeForward(const Tensor& qkv, int n_head, int n_kv_head, float theta,
                         int64_t pos_offset = 0);
// dqkv: same layout; applies the inverse rotation to the q and k gradients in place.
absl::Status RopeBackward(const Tensor& dqkv, int n_head, int n_kv_head, float theta,
                          int64_t pos_offset = 0);

}  // namespace loom::ops
