// Kernels behind the cuBLASLt fallbacks of ops/cuda/linear.cc: bias (+ GeLU) after a plain
// GEMM, the deterministic bias gradient, and adding BGRADB's fp32 partials into dbias.
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/linear.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kThreads = 256;

// target = target + bias[col]; with gelu_out, gelu_out = GeLU(target) as well.
template <typename T, typename B>
__global__ void BiasGeluKernel(T* target, const B* bias, T* gelu_out, int64_t total, int64_t oc) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    float v = ToF32(target[i]);
    if (bias != nullptr) {
      v += ToF32(bias[i % oc]);
      target[i] = FromF32<T>(v);
    }
    // GeLU of the stored (rounded) pre-activation, so out == GeLU(pre_gelu) as stored.
    if (gelu_out != nullptr) gelu_out[i] = FromF32<T>(GeluTanh(ToF32(target[i])));
  }
}

// Pass 1 of the bias gradient: block (32, 8) owns 32 columns of one slab of rows and writes
// the slab's fp32 column sums to partial[slab, col].
constexpr int kColTile = 32;
constexpr int kRowThreads = 8;

template <typename T>
__global__ void ColumnSumPartialKernel(const T* dout, float* partial, int64_t n, int64_t oc,
                                       int64_t rows_per_slab) {
  __shared__ float sums[kRowThreads][kColTile + 1];
  const int64_t col = blockIdx.x * int64_t{kColTile} + threadIdx.x;
  const int64_t row0 = blockIdx.y * rows_per_slab;
  const int64_t row1 = n < row0 + rows_per_slab ? n : row0 + rows_per_slab;
  float s = 0.0f;
  if (col < oc) {
    for (int64_t r = row0 + threadIdx.y; r < row1; r += kRowThreads) s += ToF32(dout[r * oc + col]);
  }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < oc) {
    float total = 0.0f;
#pragma unroll
    for (int j = 0; j < kRowThreads; ++j) total += sums[j][threadIdx.x];
    partial[blockIdx.y * oc + col] = total;
  }
}

// Pass 2: dbias[col] += sum over slabs of partial[slab, col], in slab order.
template <typename D>
__global__ void ColumnSumFinishKernel(const float* partial, D* dbias, int64_t slabs, int64_t oc) {
  const int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (col >= oc) return;
  float s = 0.0f;
  for (int64_t j = 0; j < slabs; ++j) s += partial[j * oc + col];
  dbias[col] = FromF32<D>(ToF32(dbias[col]) + s);
}

int BlocksFor(int64_t total, DeviceContext* ctx) {
  const int64_t wanted = CeilDiv(total, kThreads);
  const int64_t cap = int64_t{ctx->num_sms} * 16;
  return static_cast<int>(std::max<int64_t>(1, std::min(wanted, cap)));
}

template <typename T, typename B>
absl::Status LaunchBiasGelu(DeviceContext* ctx, const Tensor& target, const Tensor* bias,
                            const Tensor* gelu_out, int64_t n, int64_t oc) {
  const int64_t total = n * oc;
  BiasGeluKernel<T, B><<<BlocksFor(total, ctx), kThreads, 0, ctx->stream>>>(
      static_cast<T*>(target.data()),
      bias != nullptr ? static_cast<const B*>(bias->data()) : nullptr,
      gelu_out != nullptr ? static_cast<T*>(gelu_out->data()) : nullptr, total, oc);
  return CheckLaunch("BiasGeluKernel");
}

template <typename T, typename D>
absl::Status LaunchBiasGrad(DeviceContext* ctx, const Tensor& dout, const Tensor& dbias, int64_t n,
                            int64_t oc) {
  // About 1024 blocks (enough to fill any GPU), slabs of at least 64 rows. The split depends
  // on (n, oc) only, so the summation order, and the result, is the same on every GPU.
  const int64_t col_tiles = CeilDiv(oc, kColTile);
  const int64_t want_slabs = std::max<int64_t>(1, 1024 / col_tiles);
  const int64_t rows_per_slab = std::max<int64_t>(64, CeilDiv(n, want_slabs));
  const int64_t slabs = CeilDiv(n, rows_per_slab);
  LOOM_ASSIGN_OR_RETURN(void* scratch, OpScratch(ctx, slabs * oc * sizeof(float)));
  float* partial = static_cast<float*>(scratch);
  ColumnSumPartialKernel<T>
      <<<dim3(col_tiles, slabs), dim3(kColTile, kRowThreads), 0, ctx->stream>>>(
          static_cast<const T*>(dout.data()), partial, n, oc, rows_per_slab);
  LOOM_RETURN_IF_ERROR(CheckLaunch("ColumnSumPartialKernel"));
  ColumnSumFinishKernel<D><<<CeilDiv(oc, kThreads), kThreads, 0, ctx->stream>>>(
      partial, static_cast<D*>(dbias.data()), slabs, oc);
  return CheckLaunch("ColumnSumFinishKernel");
}

template <typename D>
__global__ void AddF32IntoKernel(const float* partial, D* dst, int64_t n) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) dst[i] = FromF32<D>(ToF32(dst[i]) + partial[i]);
}

}  // namespace

absl::Status BiasGeluEpilogue(const Tensor& target, const Tensor* bias, const Tensor* gelu_out,
                              int64_t n, int64_t oc) {
  if (n == 0 || oc == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(target));
  const bool t_bf16 = target.dtype() == DType::kBF16;
  const bool b_bf16 = bias != nullptr && bias->dtype() == DType::kBF16;
  if (t_bf16) {
    return b_bf16 ? LaunchBiasGelu<bf16_t, bf16_t>(ctx, target, bias, gelu_out, n, oc)
                  : LaunchBiasGelu<bf16_t, float>(ctx, target, bias, gelu_out, n, oc);
  }
  return b_bf16 ? LaunchBiasGelu<float, bf16_t>(ctx, target, bias, gelu_out, n, oc)
                : LaunchBiasGelu<float, float>(ctx, target, bias, gelu_out, n, oc);
}

absl::Status BiasGradAccumulate(const Tensor& dout, const Tensor& dbias, int64_t n, int64_t oc) {
  if (n == 0 || oc == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(dout));
  const bool d_bf16 = dout.dtype() == DType::kBF16;
  const bool b_bf16 = dbias.dtype() == DType::kBF16;
  if (d_bf16) {
    return b_bf16 ? LaunchBiasGrad<bf16_t, bf16_t>(ctx, dout, dbias, n, oc)
                  : LaunchBiasGrad<bf16_t, float>(ctx, dout, dbias, n, oc);
  }
  return b_bf16 ? LaunchBiasGrad<float, bf16_t>(ctx, dout, dbias, n, oc)
                : LaunchBiasGrad<float, float>(ctx, dout, dbias, n, oc);
}

absl::Status AddF32Into(const float* partial, const Tensor& dbias, int64_t oc) {
  if (oc == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(dbias));
  const int blocks = static_cast<int>(CeilDiv(oc, kThreads));
  if (dbias.dtype() == DType::kBF16) {
    AddF32IntoKernel<bf16_t>
        <<<blocks, kThreads, 0, ctx->stream>>>(partial, static_cast<bf16_t*>(dbias.data()), oc);
  } else {
    AddF32IntoKernel<float>
        <<<blocks, kThreads, 0, ctx->stream>>>(partial, static_cast<float*>(dbias.data()), oc);
  }
  return CheckLaunch("AddF32IntoKernel");
}

}  // namespace loom::ops::cuda
