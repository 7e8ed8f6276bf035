// Token + position embedding. out[b,t,:] = wte[tokens[b,t] - vocab_start, :] + wpe[t, :].
// For a vocab-parallel embedding, wte holds rows [vocab_start, vocab_start + V) and tokens
// outside that range contribute zeros (the tensor group all-reduces the result); wpe may be
// null (LLaMA: no learned positions) and should only be added on one tensor rank.
// Backward accumulates into dwte / dwpe and is deterministic on the GPU (no float atomics).
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// tokens: i32 [B, T]; wte: [V, C]; wpe: [maxT >= T, C] or null; out: [B, T, C].
absl::Status EmbeddingForward(const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                              const Tensor& out, int64_t vocab_start = 0);
// dout: [B, T, C]; dwte: [V, C] (+=); dwpe: [maxT, C] (+=) or null.
absl::Status EmbeddingBackward(const Tensor& tokens, const Tensor& dout, const Tensor& dwte,
                               const Tensor* dwpe, int64_t vocab_start = 0);

}  // namespace loom::ops
