// CUDA LayerNorm / RMSNorm (ops/norm.h), called by ops/norm.cc after it has checked shapes,
// dtypes and devices. Activations f32 or bf16; weight/bias f32 or bf16; dweight/dbias f32 or
// bf16; statistics f32. Kernels run on the device's op stream (ops/cuda/context.h).
//
// Forward: one warp per row, 128-bit loads when the row allows, fp32 statistics (two passes:
// mean, then the centred variance). Backward: the parameter gradients first (each block sums a
// column tile over a chunk of rows into an fp32 partial, a second kernel adds the partials in
// chunk order: deterministic, no atomics), then dx, one warp per row; dx may alias dout.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

// LayerNorm when bias and mean are given, RMSNorm when both are null. With b given, a + b is
// written to residual_out (rounded to the activation dtype) and normalised.
absl::Status NormForward(const Tensor& a, const Tensor* b, const Tensor& weight, const Tensor* bias,
                         float eps, int64_t n, int64_t c, const Tensor* residual_out,
                         const Tensor& out, const Tensor* mean, const Tensor& rstd);

// LayerNorm backward when mean (and dbias) are given, RMSNorm when null.
absl::Status NormBackward(const Tensor& dout, const Tensor& x, const Tensor& weight,
                          const Tensor* mean, const Tensor& rstd, int64_t n, int64_t c,
                          const Tensor& dx, const Tensor& dweight, const Tensor* dbias);

}  // namespace loom::ops::cuda
