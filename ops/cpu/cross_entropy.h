// CPU reference for softmax cross-entropy (ops/cross_entropy.h), fused and vocab-parallel.
// Templated on T so gradient tests run it in double. Sums of exponentials accumulate in
// double.
//
// The fused op is literally the vocab-parallel pieces run on one slice (row max, sum of
// exp, target logit, finish), so the two paths share every formula: combining the pieces over
// slices by hand differs from the fused op only in how the per-slice sums are rounded.
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// logits: [n, v], columns >= valid are padding (valid <= v). targets: [n] (< 0 ignored; must
// be < valid otherwise). losses: [n]. dlogits: [n, v] or null, may alias logits.
template <typename T>
void CrossEntropyForwardBackward(const T* logits, const int32_t* targets, int64_t n, int64_t v,
                                 int64_t valid, T* losses, T* dlogits, T dloss);

// row_max[r] = max over the valid columns (-inf when valid == 0).
template <typename T>
void LogitsRowMax(const T* logits, int64_t n, int64_t v, int64_t valid, T* row_max);
// sum_exp[r] = sum over the valid columns of exp(logit - global_max[r]).
template <typename T>
void LogitsSumExp(const T* logits, const T* global_max, int64_t n, int64_t v, int64_t valid,
                  T* sum_exp);
// target_logit[r] = logits[r, targets[r] - vocab_start] when that column is in [0, v), else 0.
template <typename T>
void TargetLogit(const T* logits, const int32_t* targets, int64_t vocab_start, int64_t n, int64_t v,
                 T* target_logit);
// losses[r] = log(sum) + max - target (0 for ignored rows); dlogits (null, or may alias
// logits) = dloss * (exp(logit - max) / sum - onehot) on the valid columns, 0 on padding and on
// ignored rows.
template <typename T>
void VocabParallelCrossEntropyFinish(const T* logits, const int32_t* targets, int64_t vocab_start,
                                     const T* global_max, const T* global_sum_exp,
                                     const T* global_target_logit, int64_t n, int64_t v,
                                     int64_t valid, T* losses, T* dlogits, T dloss);

}  // namespace loom::ops::cpu
