// CUDA kernels of ops/activation.h. Each thread handles one 128-bit chunk (4 f32 or 8 bf16
// elements) per grid-stride step; the vector path is taken when every pointer is 16-byte
// aligned, and the last partial chunk (or everything, when unaligned) goes element by element.
#include <cuda_runtime.h>

#include <algorithm>

#include "ops/cuda/activation.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kThreads = 256;

struct GeluOp {
  __device__ float operator()(float x) const { return GeluTanh(x); }
};
struct GeluGradOp {
  __device__ float operator()(float dout, float x) const { return dout * GeluTanhGrad(x); }
};
struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

__device__ __forceinline__ float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// out = op(x)
template <typename T, typename Op>
__global__ void Map1Kernel(const T* x, T* out, int64_t n, bool vec, Op op) {
  constexpr int V = kVec128<T>;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * V;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * V; base < n;
       base += stride) {
    if (vec && base + V <= n) {
      float xv[V], o[V];
      LoadFloats<V>(x + base, xv);
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = op(xv[i]);
      StoreFloats<V>(out + base, o);
    } else {
      for (int64_t i = base; i < n && i < base + V; ++i) out[i] = FromF32<T>(op(ToF32(x[i])));
    }
  }
}

// out = op(a, b); out may alias a or b (each element is read before it is written).
template <typename T, typename Op>
__global__ void Map2Kernel(const T* a, const T* b, T* out, int64_t n, bool vec, Op op) {
  constexpr int V = kVec128<T>;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * V;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * V; base < n;
       base += stride) {
    if (vec && base + V <= n) {
      float av[V], bv[V], o[V];
      LoadFloats<V>(a + base, av);
      LoadFloats<V>(b + base, bv);
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = op(av[i], bv[i]);
      StoreFloats<V>(out + base, o);
    } else {
      for (int64_t i = base; i < n && i < base + V; ++i) {
        out[i] = FromF32<T>(op(ToF32(a[i]), ToF32(b[i])));
      }
    }
  }
}

// Chunks index the [rows, h] output space; with vec (h a multiple of V, aligned pointers) a
// chunk never crosses a row.
template <typename T>
__global__ void SwiGLUForwardKernel(const T* inp, T* out, int64_t rows, int64_t h, bool vec) {
  constexpr int V = kVec128<T>;
  const int64_t total = rows * h;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * V;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * V; base < total;
       base += stride) {
    if (vec) {
      const int64_t r = base / h, j = base % h;
      const T* gate = inp + r * 2 * h + j;
      float g[V], u[V], o[V];
      LoadFloats<V>(gate, g);
      LoadFloats<V>(gate + h, u);
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = g[i] * Sigmoid(g[i]) * u[i];
      StoreFloats<V>(out + base, o);
    } else {
      for (int64_t e = base; e < total && e < base + V; ++e) {
        const int64_t r = e / h, j = e % h;
        const float g = ToF32(inp[r * 2 * h + j]);
        const float u = ToF32(inp[r * 2 * h + h + j]);
        out[e] = FromF32<T>(g * Sigmoid(g) * u);
      }
    }
  }
}

__device__ __forceinline__ void SwiGLUGrad(float d, float g, float u, float* dg, float* du) {
  const float s = Sigmoid(g);
  *dg = d * u * s * (1.0f + g * (1.0f - s));
  *du = d * g * s;
}

template <typename T>
__global__ void SwiGLUBackwardKernel(const T* dout, const T* inp, T* dinp, int64_t rows, int64_t h,
                                     bool vec) {
  constexpr int V = kVec128<T>;
  const int64_t total = rows * h;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * V;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * V; base < total;
       base += stride) {
    if (vec) {
      const int64_t r = base / h, j = base % h;
      const int64_t gate_at = r * 2 * h + j;
      float d[V], g[V], u[V], dg[V], du[V];
      LoadFloats<V>(dout + base, d);
      LoadFloats<V>(inp + gate_at, g);
      LoadFloats<V>(inp + gate_at + h, u);
#pragma unroll
      for (int i = 0; i < V; ++i) SwiGLUGrad(d[i], g[i], u[i], &dg[i], &du[i]);
      StoreFloats<V>(dinp + gate_at, dg);
      StoreFloats<V>(dinp + gate_at + h, du);
    } else {
      for (int64_t e = base; e < total && e < base + V; ++e) {
        const int64_t r = e / h, j = e % h;
        const int64_t gate_at = r * 2 * h + j;
        float dg, du;
        SwiGLUGrad(ToF32(dout[e]), ToF32(inp[gate_at]), ToF32(inp[gate_at + h]), &dg, &du);
        dinp[gate_at] = FromF32<T>(dg);
        dinp[gate_at + h] = FromF32<T>(du);
      }
    }
  }
}

// Grid for `total` elements in chunks of V, capped (the kernels grid-stride).
int Blocks(int64_t total, int vec_width, const DeviceContext* ctx) {
  const int64_t chunks = CeilDiv(total, vec_width);
  const int64_t cap = int64_t{ctx->num_sms} * 32;
  return static_cast<int>(std::max<int64_t>(1, std::min(CeilDiv(chunks, kThreads), cap)));
}

bool Aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs) {
    if (!IsAligned(p, 16)) return false;
  }
  return true;
}

template <typename T, typename Op>
absl::Status LaunchMap1(const Tensor& x, const Tensor& out, Op op, const char* name) {
  const int64_t n = x.numel();
  if (n == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(x));
  const bool vec = Aligned16({x.data(), out.data()});
  Map1Kernel<T, Op><<<Blocks(n, kVec128<T>, ctx), kThreads, 0, ctx->stream>>>(
      static_cast<const T*>(x.data()), static_cast<T*>(out.data()), n, vec, op);
  return CheckLaunch(name);
}

template <typename T, typename Op>
absl::Status LaunchMap2(const Tensor& a, const Tensor& b, const Tensor& out, Op op,
                        const char* name) {
  const int64_t n = a.numel();
  if (n == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(a));
  const bool vec = Aligned16({a.data(), b.data(), out.data()});
  Map2Kernel<T, Op><<<Blocks(n, kVec128<T>, ctx), kThreads, 0, ctx->stream>>>(
      static_cast<const T*>(a.data()), static_cast<const T*>(b.data()), static_cast<T*>(out.data()),
      n, vec, op);
  return CheckLaunch(name);
}

template <typename T>
absl::Status LaunchSwiGLUForward(const Tensor& inp, const Tensor& out, int64_t n, int64_t h) {
  if (n * h == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(inp));
  const bool vec = h % kVec128<T> == 0 && Aligned16({inp.data(), out.data()});
  SwiGLUForwardKernel<T><<<Blocks(n * h, kVec128<T>, ctx), kThreads, 0, ctx->stream>>>(
      static_cast<const T*>(inp.data()), static_cast<T*>(out.data()), n, h, vec);
  return CheckLaunch("SwiGLUForwardKernel");
}

template <typename T>
absl::Status LaunchSwiGLUBackward(const Tensor& dout, const Tensor& inp, const Tensor& dinp,
                                  int64_t n, int64_t h) {
  if (n * h == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(inp));
  const bool vec = h % kVec128<T> == 0 && Aligned16({dout.data(), inp.data(), dinp.data()});
  SwiGLUBackwardKernel<T><<<Blocks(n * h, kVec128<T>, ctx), kThreads, 0, ctx->stream>>>(
      static_cast<const T*>(dout.data()), static_cast<const T*>(inp.data()),
      static_cast<T*>(dinp.data()), n, h, vec);
  return CheckLaunch("SwiGLUBackwardKernel");
}

}  // namespace

absl::Status GeluForward(const Tensor& x, const Tensor& out) {
  if (x.dtype() == DType::kBF16) return LaunchMap1<bf16_t>(x, out, GeluOp{}, "GeluForward");
  return LaunchMap1<float>(x, out, GeluOp{}, "GeluForward");
}

absl::Status GeluBackward(const Tensor& dout, const Tensor& x, const Tensor& dx) {
  if (x.dtype() == DType::kBF16) {
    return LaunchMap2<bf16_t>(dout, x, dx, GeluGradOp{}, "GeluBackward");
  }
  return LaunchMap2<float>(dout, x, dx, GeluGradOp{}, "GeluBackward");
}

absl::Status SwiGLUForward(const Tensor& inp, const Tensor& out, int64_t n, int64_t h) {
  if (inp.dtype() == DType::kBF16) return LaunchSwiGLUForward<bf16_t>(inp, out, n, h);
  return LaunchSwiGLUForward<float>(inp, out, n, h);
}

absl::Status SwiGLUBackward(const Tensor& dout, const Tensor& inp, const Tensor& dinp, int64_t n,
                            int64_t h) {
  if (inp.dtype() == DType::kBF16) return LaunchSwiGLUBackward<bf16_t>(dout, inp, dinp, n, h);
  return LaunchSwiGLUBackward<float>(dout, inp, dinp, n, h);
}

absl::Status Add(const Tensor& a, const Tensor& b, const Tensor& out) {
  if (a.dtype() == DType::kBF16) return LaunchMap2<bf16_t>(a, b, out, AddOp{}, "Add");
  return LaunchMap2<float>(a, b, out, AddOp{}, "Add");
}

}  // namespace loom::ops::cuda
