// Optimizer and gradient utilities over flat buffers: fused AdamW (fp32 master weights and
// moments; on the GPU an optional bf16 copy of the updated weights is written in the same
// pass), sum of squares for the global grad norm, scaling, and dtype casts.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

struct AdamWParams {
  float lr = 3e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: param -= lr * wd * param
  int64_t step = 1;           // 1-based, for bias correction
  float grad_scale = 1.0f;    // grads are multiplied by this first (clipping, loss scaling)
};

// params, m, v: f32 [n]; grads: f32 or bf16 [n]; params_copy: bf16/f32 [n] or null.
absl::Status AdamWUpdate(const Tensor& params, const Tensor& grads, const Tensor& m,
                         const Tensor& v, const AdamWParams& p,
                         const Tensor* params_copy = nullptr);

// out: f32 [1] += sum(x^2) (accumulated in double on the CPU, fp32 tree reduction on the GPU).
absl::Status SumOfSquaresAccumulate(const Tensor& x, const Tensor& out);
// x *= factor, in place.
absl::Status Scale(const Tensor& x, float factor);
// dst = src converted (f32 <-> bf16 <-> f16), round to nearest even.
absl::Status Cast(const Tensor& src, const Tensor& dst);

}  // namespace loom::ops
