// CUDA kernels of ops/optimizer.h: fused AdamW, deterministic sum of squares, scale and casts.
// Elementwise kernels move 4 elements per access (16 bytes of fp32, 8 of a 16-bit type) when
// every pointer allows it, with a scalar path for the tail and for unaligned buffers.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/optimizer.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;

// Scalars of one AdamW step, with the bias corrections already computed (in double, on the
// host, as the CPU reference does).
struct AdamWScalars {
  float lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2;
};

__device__ __forceinline__ void AdamWElement(float& w, float g, float& m, float& v,
                                             const AdamWScalars& s) {
  g *= s.grad_scale;
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  const float m_hat = m / s.bc1;
  const float v_hat = v / s.bc2;
  w = w - s.lr * (m_hat / (sqrtf(v_hat) + s.eps) + s.weight_decay * w);
}

template <typename G, typename C>
__global__ void AdamWKernel(float* params, const G* grads, float* m, float* v, C* copy, int64_t n,
                            bool vec, AdamWScalars s) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * kVec;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * kVec; base < n;
       base += stride) {
    if (vec && base + kVec <= n) {
      float w[kVec], g[kVec], mv[kVec], vv[kVec];
      LoadFloats<kVec>(params + base, w);
      LoadFloats<kVec>(grads + base, g);
      LoadFloats<kVec>(m + base, mv);
      LoadFloats<kVec>(v + base, vv);
#pragma unroll
      for (int i = 0; i < kVec; ++i) AdamWElement(w[i], g[i], mv[i], vv[i], s);
      StoreFloats<kVec>(params + base, w);
      StoreFloats<kVec>(m + base, mv);
      StoreFloats<kVec>(v + base, vv);
      if (copy != nullptr) StoreFloats<kVec>(copy + base, w);
    } else {
      for (int64_t i = base; i < n && i < base + kVec; ++i) {
        float w = params[i], mi = m[i], vi = v[i];
        AdamWElement(w, ToF32(grads[i]), mi, vi, s);
        params[i] = w;
        m[i] = mi;
        v[i] = vi;
        if (copy != nullptr) copy[i] = FromF32<C>(w);
      }
    }
  }
}

// Sum of squares, pass 1: block b writes the fp32 sum of its grid-stride share to partial[b].
template <typename T>
__global__ void SumOfSquaresPartialKernel(const T* x, int64_t n, bool vec, float* partial) {
  __shared__ float scratch[32];
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * kVec;
  float s = 0.0f;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * kVec; base < n;
       base += stride) {
    if (vec && base + kVec <= n) {
      float xv[kVec];
      LoadFloats<kVec>(x + base, xv);
#pragma unroll
      for (int i = 0; i < kVec; ++i) s += xv[i] * xv[i];
    } else {
      for (int64_t i = base; i < n && i < base + kVec; ++i) {
        const float xi = ToF32(x[i]);
        s += xi * xi;
      }
    }
  }
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Pass 2: one block adds the partials (fixed order given their count) into out[0].
constexpr int kMaxPartials = 1024;
__global__ void SumOfSquaresFinishKernel(const float* partial, int num_partials, float* out) {
  __shared__ float scratch[32];
  float s = 0.0f;
  for (int i = threadIdx.x; i < num_partials; i += blockDim.x) s += partial[i];
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) out[0] += s;
}

template <typename T>
__global__ void ScaleKernel(T* x, int64_t n, bool vec, float factor) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * kVec;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * kVec; base < n;
       base += stride) {
    if (vec && base + kVec <= n) {
      float xv[kVec];
      LoadFloats<kVec>(x + base, xv);
#pragma unroll
      for (int i = 0; i < kVec; ++i) xv[i] *= factor;
      StoreFloats<kVec>(x + base, xv);
    } else {
      for (int64_t i = base; i < n && i < base + kVec; ++i) x[i] = FromF32<T>(ToF32(x[i]) * factor);
    }
  }
}

template <typename S, typename D>
__global__ void CastKernel(const S* src, D* dst, int64_t n, bool vec) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * kVec;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * kVec; base < n;
       base += stride) {
    if (vec && base + kVec <= n) {
      float xv[kVec];
      LoadFloats<kVec>(src + base, xv);
      StoreFloats<kVec>(dst + base, xv);
    } else {
      for (int64_t i = base; i < n && i < base + kVec; ++i) dst[i] = FromF32<D>(ToF32(src[i]));
    }
  }
}

int Blocks(int64_t n, const DeviceContext* ctx) {
  const int64_t wanted = CeilDiv(CeilDiv(n, kVec), kThreads);
  const int64_t cap = int64_t{ctx->num_sms} * 32;
  return static_cast<int>(std::max<int64_t>(1, std::min(wanted, cap)));
}

// p can be moved kVec elements of T at a time.
template <typename T>
bool VecAligned(const void* p) {
  return p == nullptr || IsAligned(p, kVec * sizeof(T));
}

template <typename G, typename C>
absl::Status LaunchAdamW(DeviceContext* ctx, const Tensor& params, const Tensor& grads,
                         const Tensor& m, const Tensor& v, const Tensor* copy,
                         const AdamWScalars& s) {
  const int64_t n = params.numel();
  void* copy_ptr = copy != nullptr ? copy->data() : nullptr;
  const bool vec = VecAligned<float>(params.data()) && VecAligned<G>(grads.data()) &&
                   VecAligned<float>(m.data()) && VecAligned<float>(v.data()) &&
                   VecAligned<C>(copy_ptr);
  AdamWKernel<G, C><<<Blocks(n, ctx), kThreads, 0, ctx->stream>>>(
      params.data_as<float>(), static_cast<const G*>(grads.data()), m.data_as<float>(),
      v.data_as<float>(), static_cast<C*>(copy_ptr), n, vec, s);
  return CheckLaunch("AdamWKernel");
}

template <typename G>
absl::Status LaunchAdamWForGrads(DeviceContext* ctx, const Tensor& params, const Tensor& grads,
                                 const Tensor& m, const Tensor& v, const Tensor* copy,
                                 const AdamWScalars& s) {
  if (copy != nullptr && copy->dtype() == DType::kBF16) {
    return LaunchAdamW<G, bf16_t>(ctx, params, grads, m, v, copy, s);
  }
  return LaunchAdamW<G, float>(ctx, params, grads, m, v, copy, s);
}

template <typename T>
absl::Status LaunchSumOfSquares(DeviceContext* ctx, const Tensor& x, const Tensor& out) {
  const int64_t n = x.numel();
  // The block count depends on n only, so the summation order is the same on every GPU.
  const int blocks = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(CeilDiv(CeilDiv(n, kVec), kThreads), kMaxPartials)));
  LOOM_ASSIGN_OR_RETURN(void* scratch, OpScratch(ctx, blocks * sizeof(float)));
  float* partial = static_cast<float*>(scratch);
  SumOfSquaresPartialKernel<T><<<blocks, kThreads, 0, ctx->stream>>>(
      static_cast<const T*>(x.data()), n, VecAligned<T>(x.data()), partial);
  LOOM_RETURN_IF_ERROR(CheckLaunch("SumOfSquaresPartialKernel"));
  SumOfSquaresFinishKernel<<<1, kMaxPartials, 0, ctx->stream>>>(partial, blocks,
                                                                out.data_as<float>());
  return CheckLaunch("SumOfSquaresFinishKernel");
}

template <typename T>
absl::Status LaunchScale(DeviceContext* ctx, const Tensor& x, float factor) {
  ScaleKernel<T><<<Blocks(x.numel(), ctx), kThreads, 0, ctx->stream>>>(
      static_cast<T*>(x.data()), x.numel(), VecAligned<T>(x.data()), factor);
  return CheckLaunch("ScaleKernel");
}

template <typename S, typename D>
absl::Status LaunchCast(DeviceContext* ctx, const Tensor& src, const Tensor& dst) {
  const bool vec = VecAligned<S>(src.data()) && VecAligned<D>(dst.data());
  CastKernel<S, D><<<Blocks(src.numel(), ctx), kThreads, 0, ctx->stream>>>(
      static_cast<const S*>(src.data()), static_cast<D*>(dst.data()), src.numel(), vec);
  return CheckLaunch("CastKernel");
}

template <typename S>
absl::Status LaunchCastFrom(DeviceContext* ctx, const Tensor& src, const Tensor& dst) {
  switch (dst.dtype()) {
    case DType::kBF16:
      return LaunchCast<S, bf16_t>(ctx, src, dst);
    case DType::kF16:
      return LaunchCast<S, f16_t>(ctx, src, dst);
    default:
      return LaunchCast<S, float>(ctx, src, dst);
  }
}

}  // namespace

absl::Status AdamWUpdate(const Tensor& params, const Tensor& grads, const Tensor& m,
                         const Tensor& v, const AdamWParams& p, const Tensor* params_copy) {
  if (params.numel() == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(params));
  AdamWScalars s;
  s.lr = p.lr;
  s.beta1 = p.beta1;
  s.beta2 = p.beta2;
  s.eps = p.eps;
  s.weight_decay = p.weight_decay;
  s.grad_scale = p.grad_scale;
  s.bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta1), p.step));
  s.bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta2), p.step));
  if (grads.dtype() == DType::kBF16) {
    return LaunchAdamWForGrads<bf16_t>(ctx, params, grads, m, v, params_copy, s);
  }
  return LaunchAdamWForGrads<float>(ctx, params, grads, m, v, params_copy, s);
}

absl::Status SumOfSquaresAccumulate(const Tensor& x, const Tensor& out) {
  if (x.numel() == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(x));
  switch (x.dtype()) {
    case DType::kBF16:
      return LaunchSumOfSquares<bf16_t>(ctx, x, out);
    case DType::kF16:
      return LaunchSumOfSquares<f16_t>(ctx, x, out);
    default:
      return LaunchSumOfSquares<float>(ctx, x, out);
  }
}

absl::Status Scale(const Tensor& x, float factor) {
  if (x.numel() == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(x));
  switch (x.dtype()) {
    case DType::kBF16:
      return LaunchScale<bf16_t>(ctx, x, factor);
    case DType::kF16:
      return LaunchScale<f16_t>(ctx, x, factor);
    default:
      return LaunchScale<float>(ctx, x, factor);
  }
}

absl::Status Cast(const Tensor& src, const Tensor& dst) {
  if (src.numel() == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(src));
  switch (src.dtype()) {
    case DType::kBF16:
      return LaunchCastFrom<bf16_t>(ctx, src, dst);
    case DType::kF16:
      return LaunchCastFrom<f16_t>(ctx, src, dst);
    default:
      return LaunchCastFrom<float>(ctx, src, dst);
  }
}

}  // namespace loom::ops::cuda
