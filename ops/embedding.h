// Token + position embedding. out[b,t,:] = wte[tokens[b,t] - vocab_start, :] + wpe[pos(b,t), :],
// where pos(b,t) = t, or positions[b,t] when a per-token position array is given (packed
// fine-tuning samples whose positions restart at each document, and the global positions of a
// context-parallel rank's chunks).
// For a vocab-parallel embedding, wte holds rows [vocab_start, vocab_start + V) and tokens
// outside that range contribute zeros (the tensor group all-reduces the result); wpe may be
// null (LLaMA: no learned positions) and should only be added on one tensor rank.
// Backward accumulates into dwte / dwpe and is deterministic on the GPU (no float atomics).
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// tokens: i32 [B, T]; wte: [V, C]; wpe: [maxT >= T, C] or null; out: [B, T, C].
// positions: null, or i32 [B, T] on the tokens' device with every value in [0, maxT) (the CPU
// refuses one outside, naming it; the CUDA kernels, which cannot report, add no position row
// for it). Read only when wpe is given.
absl::Status EmbeddingForward(const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                              const Tensor& out, int64_t vocab_start = 0,
                              const Tensor* positions = nullptr);
// dout: [B, T, C]; dwte: [V, C] (+=); dwpe: [maxT, C] (+=) or null; positions as above: row
// pos(b,t) of dwpe receives dout[b,t] (a scatter-add, summed in token order on the CPU, and
// deterministically by a sort on the GPU).
absl::Status EmbeddingBackward(const Tensor& tokens, const Tensor& dout, const Tensor& dwte,
                               const Tensor* dwpe, int64_t vocab_start = 0,
                               const Tensor* positions = nullptr);

}  // namespace loom::ops
