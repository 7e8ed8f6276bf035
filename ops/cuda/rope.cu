#include <cuda_runtime.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/rope.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kThreads = 128;

// Block = one token. Shared memory: cos[half], sin[half] (sin negated for the inverse).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    RopeKernel(T* qkv, int64_t t, int nh, int nkv, int hd, float theta, int64_t pos_offset,
               bool inverse, const int32_t* positions) {
  extern __shared__ float trig[];
  const int half = hd / 2;
  const int64_t token = blockIdx.x;
  const int64_t pos = pos_offset + (positions != nullptr ? positions[token] : token % t);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    // Same recipe as cpu::RopeAngle: inv_freq rounded to float, angle = float(pos) * inv_freq
    // in float, then cos/sin of that float in double.
    const float inv_freq =
        static_cast<float>(pow(static_cast<double>(theta), -2.0 * i / static_cast<double>(hd)));
    const float angle = __fmul_rn(static_cast<float>(pos), inv_freq);
    double s, c;
    sincos(static_cast<double>(angle), &s, &c);
    trig[i] = static_cast<float>(c);
    trig[half + i] = inverse ? -static_cast<float>(s) : static_cast<float>(s);
  }
  __syncthreads();
  T* row = qkv + token * static_cast<int64_t>(nh + 2 * nkv) * hd;
  const int pairs = (nh + nkv) * half;  // q heads then k heads, contiguous at the row start
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int h = p / half;
    const int i = p - h * half;
    T* x = row + static_cast<int64_t>(h) * hd;
    const float x1 = ToF32(x[i]);
    const float x2 = ToF32(x[i + half]);
    const float c = trig[i];
    const float s = trig[half + i];
    x[i] = FromF32<T>(x1 * c - x2 * s);
    x[i + half] = FromF32<T>(x2 * c + x1 * s);
  }
}

template <typename T>
absl::Status Launch(const Tensor& qkv, int nh, int nkv, int hd, float theta, int64_t pos_offset,
                    bool inverse, const Tensor* positions, cudaStream_t stream) {
  const int64_t tokens = qkv.dim(0) * qkv.dim(1);
  if (tokens == 0) return absl::OkStatus();
  const size_t smem = sizeof(float) * hd;
  RopeKernel<T><<<static_cast<unsigned>(tokens), kThreads, smem, stream>>>(
      qkv.data_as<T>(), qkv.dim(1), nh, nkv, hd, theta, pos_offset, inverse,
      positions != nullptr ? positions->data_as<int32_t>() : nullptr);
  return CheckLaunch("RopeKernel");
}

}  // namespace

absl::Status RopeApply(const Tensor& qkv, int nh, int nkv, int hd, float theta, int64_t pos_offset,
                       bool inverse, const Tensor* positions) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(qkv));
  switch (qkv.dtype()) {
    case DType::kF32:
      return Launch<float>(qkv, nh, nkv, hd, theta, pos_offset, inverse, positions, ctx->stream);
    case DType::kBF16:
      return Launch<bf16_t>(qkv, nh, nkv, hd, theta, pos_offset, inverse, positions, ctx->stream);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("RopeApply: unsupported dtype ", std::string(DTypeName(qkv.dtype()))));
  }
}

}  // namespace loom::ops::cuda
