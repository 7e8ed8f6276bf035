// Pointwise activations: GeLU (tanh approximation, as GPT-2) and SwiGLU (LLaMA MLP), plus the
// residual add. dx overwrites.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

absl::Status GeluForward(const Tensor& x, const Tensor& out);
absl::Status GeluBackward(const Tensor& dout, const Tensor& x, const Tensor& dx);

// inp: [N, 2H] with the gate in columns [0, H) and the up projection in [H, 2H);
// out: [N, H] = silu(gate) * up.
absl::Status SwiGLUForward(const Tensor& inp, const Tensor& out);
// dinp: [N, 2H] (overwrite).
absl::Status SwiGLUBackward(const Tensor& dout, const Tensor& inp, const Tensor& dinp);

// out = a + b (same shape; out may alias a or b).
absl::Status Add(const Tensor& a, const Tensor& b, const Tensor& out);

}  // namespace loom::ops
