// Top-k sampling of the next token from a model's logits, for `loom train`'s text samples and
// generation. Works on this rank's vocab slice of a vocab-parallel head: the tensor group
// gathers the slices, so every tensor rank picks the same token. Padded vocab rows are never
// picked. The draw is Philox (seed, draw index): the same seed gives the same tokens on any
// layout and any device.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "runtime/tensor.h"

namespace loom {

inline constexpr int kDefaultTopK = 40;

// Picks from row `row` of `logits` ([rows, local vocab], f32 or bf16, any device): softmax over
// the k largest logits of the real vocabulary (the first `vocab` of `padded_vocab` ids), then
// one uniform draw. `tp` gathers the vocab slices when the local vocab is not the padded one
// (null = the whole vocab is here).
absl::StatusOr<int32_t> SampleTopK(const Tensor& logits, int64_t row, int64_t vocab,
                                   int64_t padded_vocab, Communicator* tp, uint64_t seed,
                                   uint64_t draw, int k = kDefaultTopK);

// Generation's choice of the next token (loom generate): temperature <= 0 is greedy (the largest
// logit of the real vocabulary; the lowest id among equals). Otherwise softmax(logits /
// temperature) restricted to the top_k largest (top_k <= 0: all), then to the smallest set of
// those, largest first, whose probability reaches top_p (top_p >= 1: all), renormalised, one
// Philox draw (seed, draw). Vocab slices and padding as SampleTopK.
struct SamplingOptions {
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
};
absl::StatusOr<int32_t> SampleToken(const Tensor& logits, int64_t row, int64_t vocab,
                                    int64_t padded_vocab, Communicator* tp,
                                    const SamplingOptions& options, uint64_t seed, uint64_t draw);

}  // namespace loom
