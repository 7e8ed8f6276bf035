// CPU reference for ops/embedding.h. Templates on the element type (float for dispatch,
// double for the gradient checks). Tokens outside [vocab_start, vocab_start + v) select a zero
// row (the vocab-parallel case: another tensor rank owns them).
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// out[b, t, :] = wte[tokens[b, t] - vocab_start, :] + (wpe ? wpe[t, :] : 0).
template <typename T>
void EmbeddingForward(const int32_t* tokens, const T* wte, const T* wpe, T* out, int64_t b,
                      int64_t t, int64_t c, int64_t v, int64_t vocab_start);

// dwte[row] += dout[b, t] for each token in range; dwpe[t] += sum_b dout[b, t] (when non-null).
// Threads split the channels, so every element is summed in token order: deterministic for
// any thread count.
template <typename T>
void EmbeddingBackward(const int32_t* tokens, const T* dout, T* dwte, T* dwpe, int64_t b, int64_t t,
                       int64_t c, int64_t v, int64_t vocab_start);

}  // namespace loom::ops::cpu
