#include <cuda_runtime.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/decode_attention.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kThreads = 128;

// Shared memory: q [hd], scores [pos0 + token + 1], reduction scratch [32].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    DecodeAttentionKernel(const T* cache, T* out, int nh, int nkv, int hd, int64_t pos0) {
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y;
  const int g = h / (nh / nkv);
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * hd;
  const int64_t keys = pos0 + i + 1;
  float* q = smem;
  float* s = smem + hd;
  const T* qsrc = cache + (pos0 + i) * row + static_cast<int64_t>(h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) q[d] = ToF32(qsrc[d]);
  __syncthreads();
  const float scale = rsqrtf(static_cast<float>(hd));
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const T* k = cache + j * row + static_cast<int64_t>(nh + g) * hd;
    float dot = 0.0f;
    for (int d = 0; d < hd; ++d) dot = fmaf(q[d], ToF32(k[d]), dot);
    s[j] = dot * scale;
    mx = fmaxf(mx, s[j]);
  }
  // Block max (every key is visible, so it is finite).
  mx = WarpMax(mx);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = mx;
  __syncthreads();
  mx = scratch[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) mx = fmaxf(mx, scratch[w]);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    s[j] = __expf(s[j] - mx);
    sum += s[j];
  }
  sum = BlockSum(sum, scratch);  // synchronises: every score is written
  const float inv = 1.0f / sum;
  T* o = out + i * static_cast<int64_t>(nh) * hd + static_cast<int64_t>(h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    const T* v = cache + static_cast<int64_t>(nh + nkv + g) * hd + d;
    float acc = 0.0f;
    for (int64_t j = 0; j < keys; ++j) acc = fmaf(s[j], ToF32(v[j * row]), acc);
    o[d] = FromF32<T>(acc * inv);
  }
}

template <typename T>
absl::Status Launch(const Tensor& cache, int nh, int nkv, int hd, int64_t pos0, int64_t n,
                    const Tensor& out, cudaStream_t stream) {
  const size_t smem = sizeof(float) * (static_cast<size_t>(hd) + pos0 + n);
  if (n > INT32_MAX || nh > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeAttention: grid ", n, " x ", nh, " exceeds the CUDA limits"));
  }
  int device = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&device));
  LOOM_RETURN_IF_ERROR(
      AllowDynamicSmem(device, reinterpret_cast<const void*>(DecodeAttentionKernel<T>), smem));
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(nh));
  DecodeAttentionKernel<T><<<grid, kThreads, smem, stream>>>(cache.data_as<const T>(),
                                                             out.data_as<T>(), nh, nkv, hd, pos0);
  return CheckLaunch("DecodeAttentionKernel");
}

}  // namespace

absl::Status DecodeAttention(const Tensor& cache, int nh, int nkv, int hd, int64_t pos0, int64_t n,
                             const Tensor& out) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(cache));
  switch (cache.dtype()) {
    case DType::kF32:
      return Launch<float>(cache, nh, nkv, hd, pos0, n, out, ctx->stream);
    case DType::kBF16:
      return Launch<bf16_t>(cache, nh, nkv, hd, pos0, n, out, ctx->stream);
    default:
      return absl::InvalidArgumentError(absl::StrCat("DecodeAttention: unsupported dtype ",
                                                     std::string(DTypeName(cache.dtype()))));
  }
}

}  // namespace loom::ops::cuda
