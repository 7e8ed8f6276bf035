// CUDA backend of ops/optimizer.h. AdamW is one fused elementwise pass (fp32 master weights
// and moments, f32 or bf16 gradients, optional f32/bf16 copy of the new weights). The sum of
// squares is deterministic: a fixed grid of blocks writes fp32 partials, one block adds them in
// order and accumulates into out[0]; no atomics. Arguments were checked by ops/optimizer.cc.
#pragma once

#include "absl/status/status.h"
#include "ops/optimizer.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

absl::Status AdamWUpdate(const Tensor& params, const Tensor& grads, const Tensor& m,
                         const Tensor& v, const AdamWParams& p, const Tensor* params_copy);
absl::Status SumOfSquaresAccumulate(const Tensor& x, const Tensor& out);
absl::Status Scale(const Tensor& x, float factor);
absl::Status Cast(const Tensor& src, const Tensor& dst);

}  // namespace loom::ops::cuda
