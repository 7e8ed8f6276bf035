// Softmax cross-entropy fused with its gradient (loss and dlogits in one pass; probabilities
// are never stored), and the pieces of the vocab-parallel version, where each tensor rank
// holds columns [vocab_start, vocab_start + V) of the logits and max, sum-of-exp and target
// logit are all-reduced over the tensor group between the steps.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// logits: [N, V] (f32 or bf16); targets: i32 [N] (a target < 0 is ignored: loss 0, grad 0);
// losses: f32 [N]; dlogits: [N, V] (overwrite; may alias logits) or null for loss only.
// dlogits = dloss * (softmax(logits) - onehot(target)) where dloss is the weight of each row's
// loss in the objective (e.g. 1 / (N * grad_accum_steps)). Columns >= valid_vocab are padding:
// they get probability 0 and gradient 0 (valid_vocab < 0 means all V columns are real).
absl::Status CrossEntropyForwardBackward(const Tensor& logits, const Tensor& targets,
                                         const Tensor& losses, const Tensor* dlogits, float dloss,
                                         int64_t valid_vocab = -1);

// Vocab-parallel pieces (valid_vocab counts the real columns of this slice).
// row_max: f32 [N] = max over this slice.
absl::Status LogitsRowMax(const Tensor& logits, const Tensor& row_max, int64_t valid_vocab = -1);
// sum_exp: f32 [N] = sum over this slice of exp(logit - global_max).
absl::Status LogitsSumExp(const Tensor& logits, const Tensor& global_max, const Tensor& sum_exp,
                          int64_t valid_vocab = -1);
// target_logit: f32 [N] = logits[n, targets[n] - vocab_start] if in this slice, else 0.
absl::Status TargetLogit(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                         const Tensor& target_logit);
// losses[n] = log(global_sum_exp) + global_max - global_target_logit (0 for ignored rows);
// dlogits (overwrite, may alias logits) = dloss * (softmax - onehot) on this slice.
absl::Status VocabParallelCrossEntropyFinish(const Tensor& logits, const Tensor& targets,
                                             int64_t vocab_start, const Tensor& global_max,
                                             const Tensor& global_sum_exp,
                                             const Tensor& global_target_logit,
                                             const Tensor& losses, const Tensor* dlogits,
                                             float dloss, int64_t valid_vocab = -1);

}  // namespace loom::ops
