// Linear layers: out = inp @ weight^T + bias (PyTorch layout: weight is [OC, IC]).
// CPU: OpenBLAS sgemm. GPU: cuBLASLt, bf16 inputs with fp32 accumulation, bias and GeLU fused
// into the epilogue, bias gradient fused into the dW GEMM where cuBLASLt allows.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// inp: [N, IC] (any leading dims flattened into N); weight: [OC, IC]; bias: [OC] or null;
// out: [N, OC]. When pre_gelu is given ([N, OC]) it receives inp @ W^T + b and out receives
// GeLU(pre_gelu) (tanh approximation), fused on the GPU.
absl::Status LinearForward(const Tensor& inp, const Tensor& weight, const Tensor* bias,
                           const Tensor& out, const Tensor* pre_gelu = nullptr);
// dout: [N, OC]. dinp = dout @ W (overwrite; null to skip); dweight += dout^T @ inp;
// dbias += column sums of dout (null to skip).
absl::Status LinearBackward(const Tensor& dout, const Tensor& inp, const Tensor& weight,
                            const Tensor* dinp, const Tensor& dweight, const Tensor* dbias);

// The same backward split in two, for pipeline schedules that defer weight gradients
// (ZERO_BUBBLE): the input gradient alone, dinp = dout @ W (overwrite), which the previous
// stage waits for, and the weight gradients alone, dweight += dout^T @ inp and dbias += column
// sums of dout (null to skip), run later. Each runs the very GEMM LinearBackward runs, on both
// backends, so Input then Weight gives LinearBackward's results bit for bit.
absl::Status LinearBackwardInput(const Tensor& dout, const Tensor& weight, const Tensor& dinp);
absl::Status LinearBackwardWeight(const Tensor& dout, const Tensor& inp, const Tensor& weight,
                                  const Tensor& dweight, const Tensor* dbias);

// General GEMM on row-major matrices: c = alpha * op(a) @ op(b) + beta * c, with
// op(x) = x^T when the trans flag is set. a: [M, K] (or [K, M]), b: [K, N] (or [N, K]).
absl::Status Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                  float alpha = 1.0f, float beta = 0.0f);

// fp32 GEMMs on CUDA use TF32 tensor cores when `on` (RuntimeConfig.tf32; default off, so
// fp32 on a GPU matches the CPU reference closely). Process-wide; no effect on the CPU
// backend or on bf16 GEMMs.
void SetTf32ForFp32Gemms(bool on);

}  // namespace loom::ops
