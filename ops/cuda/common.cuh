// Device helpers shared by the CUDA kernels of every op family: conversions between fp32 and
// the 16-bit storage types (round to nearest even, as runtime/dtype.h does on the CPU), packed
// 128-bit loads and stores, and warp / block reductions. Everything here is inline; include it
// from .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace loom::ops::cuda {

using bf16_t = __nv_bfloat16;
using f16_t = __half;

__host__ __device__ constexpr int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- conversions: arithmetic always happens in fp32 ----
__device__ __forceinline__ float ToF32(float x) { return x; }
__device__ __forceinline__ float ToF32(bf16_t x) { return __bfloat162float(x); }
__device__ __forceinline__ float ToF32(f16_t x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T FromF32(float x);
template <>
__device__ __forceinline__ float FromF32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16_t FromF32<bf16_t>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ f16_t FromF32<f16_t>(float x) {
  return __float2half_rn(x);
}

// ---- packed loads / stores ----
// N elements of T moved as one aligned access: N * sizeof(T) == 16 gives a 128-bit load.
template <typename T, int N>
struct alignas(sizeof(T) * N) Packed {
  T v[N];
};

// Elements of T per 128-bit access.
template <typename T>
inline constexpr int kVec128 = static_cast<int>(16 / sizeof(T));

template <int N, typename T>
__device__ __forceinline__ Packed<T, N> LoadPacked(const T* p) {
  return *reinterpret_cast<const Packed<T, N>*>(p);
}
template <int N, typename T>
__device__ __forceinline__ void StorePacked(T* p, const Packed<T, N>& x) {
  *reinterpret_cast<Packed<T, N>*>(p) = x;
}

// Loads N consecutive elements as floats (one vector access).
template <int N, typename T>
__device__ __forceinline__ void LoadFloats(const T* p, float (&out)[N]) {
  Packed<T, N> x = LoadPacked<N>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = ToF32(x.v[i]);
}
// Stores N floats as N consecutive elements of T (one vector access).
template <int N, typename T>
__device__ __forceinline__ void StoreFloats(T* p, const float (&in)[N]) {
  Packed<T, N> x;
#pragma unroll
  for (int i = 0; i < N; ++i) x.v[i] = FromF32<T>(in[i]);
  StorePacked<N>(p, x);
}

// True when p is aligned to `bytes` (host side: picks the vector path of a kernel).
inline bool IsAligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// ---- GPT-2 GeLU (tanh approximation), shared by the activation kernels and the linear
// epilogue fallback so both compute the same function ----
__device__ __forceinline__ float GeluTanh(float x) {
  constexpr float kScale = 0.7978845608028654f;  // sqrt(2 / pi)
  const float u = kScale * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}
__device__ __forceinline__ float GeluTanhGrad(float x) {
  constexpr float kScale = 0.7978845608028654f;
  const float u = kScale * (x + 0.044715f * x * x * x);
  const float th = tanhf(u);
  const float du = kScale * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

// ---- reductions ----
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Sum over all threads of the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `scratch` is __shared__ storage of 32 elements. The order of additions is
// fixed by the block shape, so the result is deterministic. Synchronises the block twice.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int num_warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < num_warps ? scratch[lane] : T(0);
  return WarpSum(v);
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int num_warps = blockDim.x / 32;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < num_warps ? scratch[lane] : -INFINITY;
  return WarpMax(v);
}

}  // namespace loom::ops::cuda
