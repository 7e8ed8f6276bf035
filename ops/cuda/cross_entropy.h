// CUDA softmax cross-entropy (ops/cross_entropy.h), called by ops/cross_entropy.cc after its
// checks. logits / dlogits f32 or bf16, per-row values f32, targets i32; op stream.
//
// One block per row. The fused op keeps a running (max, sum of exp) per thread in one pass
// over the row (online softmax), merges the pairs across the block in a fixed order
// (deterministic), then writes loss and dlogits in a second pass; each thread reads a logit
// before it writes the gradient at the same place, so dlogits may alias logits. A target at or
// beyond valid_vocab (a caller bug the GPU cannot report cheaply) gives a NaN loss.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

absl::Status CrossEntropyForwardBackward(const Tensor& logits, const Tensor& targets, int64_t n,
                                         int64_t v, int64_t valid, const Tensor& losses,
                                         const Tensor* dlogits, float dloss);
absl::Status LogitsRowMax(const Tensor& logits, int64_t n, int64_t v, int64_t valid,
                          const Tensor& row_max);
absl::Status LogitsSumExp(const Tensor& logits, const Tensor& global_max, int64_t n, int64_t v,
                          int64_t valid, const Tensor& sum_exp);
absl::Status TargetLogit(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                         int64_t n, int64_t v, const Tensor& target_logit);
absl::Status VocabParallelCrossEntropyFinish(const Tensor& logits, const Tensor& targets,
                                             int64_t vocab_start, const Tensor& global_max,
                                             const Tensor& global_sum_exp,
                                             const Tensor& global_target_logit, int64_t n,
                                             int64_t v, int64_t valid, const Tensor& losses,
                                             const Tensor* dlogits, float dloss);

}  // namespace loom::ops::cuda
