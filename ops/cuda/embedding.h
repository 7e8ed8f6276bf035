// CUDA backend of ops/embedding.h. Forward: one thread per 128-bit chunk of an output row.
// Backward is deterministic without float atomics: token positions are stably sorted by
// vocabulary row (CUB radix sort of (row, position) pairs), then the warp that finds the
// start of a run of equal rows sums that run's dout rows in position order in fp32 and adds
// the total into dwte once. dwpe sums over the batch in batch order, or, with per-token position
// ids, goes through the same sort keyed by position. Position ids outside [0, maxT) add no row
// (forward) and receive nothing (backward). Arguments were checked by ops/embedding.cc.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

absl::Status EmbeddingForward(const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                              const Tensor& out, int64_t b, int64_t t, int64_t c, int64_t v,
                              int64_t vocab_start, const Tensor* positions = nullptr);
absl::Status EmbeddingBackward(const Tensor& tokens, const Tensor& dout, const Tensor& dwte,
                               const Tensor* dwpe, int64_t b, int64_t t, int64_t c, int64_t v,
                               int64_t vocab_start, const Tensor* positions = nullptr);

}  // namespace loom::ops::cuda
