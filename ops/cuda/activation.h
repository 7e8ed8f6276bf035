// CUDA backend of ops/activation.h: vectorised elementwise kernels (128-bit loads when the
// pointers are 16-byte aligned, a scalar tail otherwise) for f32 and bf16, computing in fp32.
// Arguments were checked by ops/activation.cc.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

absl::Status GeluForward(const Tensor& x, const Tensor& out);
absl::Status GeluBackward(const Tensor& dout, const Tensor& x, const Tensor& dx);
absl::Status SwiGLUForward(const Tensor& inp, const Tensor& out, int64_t n, int64_t h);
absl::Status SwiGLUBackward(const Tensor& dout, const Tensor& inp, const Tensor& dinp, int64_t n,
                            int64_t h);
absl::Status Add(const Tensor& a, const Tensor& b, const Tensor& out);

}  // namespace loom::ops::cuda
