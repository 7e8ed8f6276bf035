// CUDA backend of ops/linear.h: cuBLASLt GEMMs on row-major tensors (mapped to column-major
// by computing the transposed product). bf16 operands multiply with fp32 accumulation; fp32
// operands use full fp32 compute (no TF32) unless SetFp32GemmTf32(true), so by default fp32
// results match the CPU closely. Bias and
// GeLU are fused into the GEMM epilogue, and the bias gradient into the dW GEMM (BGRADB),
// when cuBLASLt offers an algorithm for the case; otherwise a plain GEMM is followed by a
// small kernel, with the same result. Arguments were checked by ops/linear.cc.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

absl::Status LinearForward(const Tensor& inp, const Tensor& weight, const Tensor* bias,
                           const Tensor& out, const Tensor* pre_gelu, int64_t n, int64_t ic,
                           int64_t oc);
absl::Status LinearBackward(const Tensor& dout, const Tensor& inp, const Tensor& weight,
                            const Tensor* dinp, const Tensor& dweight, const Tensor* dbias,
                            int64_t n, int64_t ic, int64_t oc);
// c[m, n] = alpha * op(a) @ op(b) + beta * c (row-major).
absl::Status Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                  float alpha, float beta, int64_t m, int64_t n, int64_t k);

// fp32 GEMMs on TF32 tensor cores (inputs rounded to 10 mantissa bits, fp32 accumulation):
// several times faster on Hopper, ~1e-3 relative from the fp32 result. Off by default;
// the job's runtime.tf32 sets it (through ops/linear.h SetTf32ForFp32Gemms). Process-wide.
void SetFp32GemmTf32(bool on);
bool Fp32GemmTf32();

// Kernels behind the fallbacks (ops/cuda/linear_kernels.cu), on the device's op stream.
// target[n, oc] += bias (when non-null); with gelu_out non-null, gelu_out = GeLU(target).
absl::Status BiasGeluEpilogue(const Tensor& target, const Tensor* bias, const Tensor* gelu_out,
                              int64_t n, int64_t oc);
// dbias[oc] += column sums of dout[n, oc], summed in a fixed order (deterministic).
absl::Status BiasGradAccumulate(const Tensor& dout, const Tensor& dbias, int64_t n, int64_t oc);
// dbias[oc] += partial[oc] (fp32 partial sums from the BGRADB epilogue).
absl::Status AddF32Into(const float* partial, const Tensor& dbias, int64_t oc);

}  // namespace loom::ops::cuda
