// CPU reference for ops/embedding.h. Templates on the element type (float for dispatch,
// double for the gradient checks). Tokens outside [vocab_start, vocab_start + v) select a zero
// row (the vocab-parallel case: another tensor rank owns them).
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// out[b, t, :] = wte[tokens[b, t] - vocab_start, :] + (wpe ? wpe[pos, :] : 0), with pos = t, or
// positions[b * t_count + t] when positions is non-null (each in range: ops/embedding.cc checks).
template <typename T>
void EmbeddingForward(const int32_t* tokens, const T* wte, const T* wpe, T* out, int64_t b,
                      int64_t t, int64_t c, int64_t v, int64_t vocab_start,
                      const int32_t* positions = nullptr);

// dwte[row] += dout[b, t] for each token in range; dwpe[pos] += dout[b, t] (when non-null; pos
// as above). Threads split the channels, so every element is summed in token order:
// deterministic for any thread count.
template <typename T>
void EmbeddingBackward(const int32_t* tokens, const T* dout, T* dwte, T* dwpe, int64_t b, int64_t t,
                       int64_t c, int64_t v, int64_t vocab_start,
                       const int32_t* positions = nullptr);

}  // namespace loom::ops::cpu
