// LayerNorm and RMSNorm over the last dimension, saving statistics for backward, and the
// fused residual-add + norm used between blocks. Statistics (mean, rstd) are always fp32.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// x, out: [N, C]; weight, bias: [C]; mean, rstd: f32 [N].
absl::Status LayerNormForward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                              const Tensor& out, const Tensor& mean, const Tensor& rstd);
// dx = (overwrite); dweight, dbias += .
absl::Status LayerNormBackward(const Tensor& dout, const Tensor& x, const Tensor& weight,
                               const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                               const Tensor& dweight, const Tensor& dbias);

// out = x * rstd * weight with rstd = 1 / sqrt(mean(x^2) + eps).
absl::Status RMSNormForward(const Tensor& x, const Tensor& weight, float eps, const Tensor& out,
                            const Tensor& rstd);
absl::Status RMSNormBackward(const Tensor& dout, const Tensor& x, const Tensor& weight,
                             const Tensor& rstd, const Tensor& dx, const Tensor& dweight);

// residual_out = a + b; out = LayerNorm(residual_out). One pass over memory on the GPU.
absl::Status FusedResidualLayerNormForward(const Tensor& a, const Tensor& b, const Tensor& weight,
                                           const Tensor& bias, float eps,
                                           const Tensor& residual_out, const Tensor& out,
                                           const Tensor& mean, const Tensor& rstd);
// residual_out = a + b; out = RMSNorm(residual_out).
absl::Status FusedResidualRMSNormForward(const Tensor& a, const Tensor& b, const Tensor& weight,
                                         float eps, const Tensor& residual_out, const Tensor& out,
                                         const Tensor& rstd);

}  // namespace loom::ops
