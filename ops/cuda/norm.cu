#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/norm.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;  // rows per block in the row kernels
constexpr int kColTile = 32;       // columns per block in the parameter-gradient kernel
constexpr int kRowLanes = 8;       // threads along the rows of that kernel

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<float>{}) or f(TypeTag<bf16_t>{}) according to dtype.
template <typename F>
absl::Status DispatchFloat(DType dtype, const char* what, F&& f) {
  switch (dtype) {
    case DType::kF32:
      return f(TypeTag<float>{});
    case DType::kBF16:
      return f(TypeTag<bf16_t>{});
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unsupported dtype ", std::string(DTypeName(dtype))));
  }
}

// The value of x after a round trip through T (what a store and a reload give).
template <typename T>
__device__ __forceinline__ float RoundTo(float x) {
  return ToF32(FromF32<T>(x));
}

// One warp per row. kVec consecutive elements per lane and step (1, or a 128-bit vector).
// x is a (or the rounded a + b, written to residual_out and read back from there).
// No __restrict__: residual_out may alias a or b (an in-place residual stream).
template <typename T, typename W, int kVec, bool kRms, bool kResidual>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    NormForwardKernel(const T* a, const T* b, const W* weight, const W* bias, float eps, int64_t n,
                      int c, T* residual_out, T* out, float* mean, float* rstd) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= n) return;
  const int64_t base = row * c;
  const T* x = kResidual ? residual_out + base : a + base;

  float sum = 0.0f;  // sum of x (LayerNorm) or of x^2 (RMSNorm)
  for (int j = lane * kVec; j < c; j += 32 * kVec) {
    float v[kVec];
    if constexpr (kResidual) {
      float va[kVec], vb[kVec];
      LoadFloats<kVec>(a + base + j, va);
      LoadFloats<kVec>(b + base + j, vb);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[k] = RoundTo<T>(va[k] + vb[k]);
      StoreFloats<kVec>(residual_out + base + j, v);
    } else {
      LoadFloats<kVec>(x + j, v);
    }
#pragma unroll
    for (int k = 0; k < kVec; ++k) sum += kRms ? v[k] * v[k] : v[k];
  }
  float m = 0.0f;
  float sq;
  if constexpr (kRms) {
    sq = WarpSum(sum);
  } else {
    m = WarpSum(sum) / c;
    float ss = 0.0f;  // centred second pass: no cancellation for rows with a large mean
    for (int j = lane * kVec; j < c; j += 32 * kVec) {
      float v[kVec];
      LoadFloats<kVec>(x + j, v);
#pragma unroll
      for (int k = 0; k < kVec; ++k) ss += (v[k] - m) * (v[k] - m);
    }
    sq = WarpSum(ss);
  }
  const float s = 1.0f / sqrtf(sq / c + eps);
  for (int j = lane * kVec; j < c; j += 32 * kVec) {
    float v[kVec], o[kVec];
    LoadFloats<kVec>(x + j, v);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      float y = (v[k] - m) * s * ToF32(weight[j + k]);
      if constexpr (!kRms) y += ToF32(bias[j + k]);
      o[k] = y;
    }
    StoreFloats<kVec>(out + base + j, o);
  }
  if (lane == 0) {
    if constexpr (!kRms) mean[row] = m;
    rstd[row] = s;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * weight (RMSNorm: no
// mean(g) term, xhat = x * rstd). One warp per row; every lane reads all of its elements in
// the first pass before the warp-wide sums, so dx may alias dout.
template <typename T, typename W, int kVec, bool kRms>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    NormBackwardDxKernel(const T* dout, const T* x, const W* weight, const float* mean,
                         const float* rstd, int64_t n, int c, T* dx) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= n) return;
  const int64_t base = row * c;
  const float m = kRms ? 0.0f : mean[row];
  const float s = rstd[row];
  float sum_g = 0.0f, sum_gx = 0.0f;
  for (int j = lane * kVec; j < c; j += 32 * kVec) {
    float dy[kVec], xv[kVec];
    LoadFloats<kVec>(dout + base + j, dy);
    LoadFloats<kVec>(x + base + j, xv);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const float g = dy[k] * ToF32(weight[j + k]);
      sum_g += g;
      sum_gx += g * ((xv[k] - m) * s);
    }
  }
  const float mean_g = kRms ? 0.0f : WarpSum(sum_g) / c;
  const float mean_gx = WarpSum(sum_gx) / c;
  for (int j = lane * kVec; j < c; j += 32 * kVec) {
    float dy[kVec], xv[kVec], d[kVec];
    LoadFloats<kVec>(dout + base + j, dy);
    LoadFloats<kVec>(x + base + j, xv);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const float g = dy[k] * ToF32(weight[j + k]);
      d[k] = s * (g - mean_g - ((xv[k] - m) * s) * mean_gx);
    }
    StoreFloats<kVec>(dx + base + j, d);
  }
}

// Block (kColTile x kRowLanes) sums dout * xhat and dout over rows [chunk * rows_per_chunk,
// +rows_per_chunk) for kColTile columns, then over its row lanes in a fixed order, and writes
// one fp32 partial per (chunk, column).
template <typename T, bool kRms>
__global__ void __launch_bounds__(kColTile* kRowLanes)
    NormParamGradPartialKernel(const T* dout, const T* x, const float* mean, const float* rstd,
                               int64_t n, int c, int64_t rows_per_chunk, float* partial_dw,
                               float* partial_db) {
  __shared__ float sdw[kRowLanes][kColTile + 1];
  __shared__ float sdb[kRowLanes][kColTile + 1];
  const int col = blockIdx.x * kColTile + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * rows_per_chunk;
  const int64_t r1 = min(n, r0 + rows_per_chunk);
  float dw = 0.0f, db = 0.0f;
  if (col < c) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const float dy = ToF32(dout[r * c + col]);
      const float xhat = (ToF32(x[r * c + col]) - (kRms ? 0.0f : mean[r])) * rstd[r];
      dw += dy * xhat;
      db += dy;
    }
  }
  sdw[threadIdx.y][threadIdx.x] = dw;
  sdb[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && col < c) {
    float tw = 0.0f, tb = 0.0f;
#pragma unroll
    for (int i = 0; i < kRowLanes; ++i) {
      tw += sdw[i][threadIdx.x];
      tb += sdb[i][threadIdx.x];
    }
    partial_dw[chunk * c + col] = tw;
    if (partial_db != nullptr) partial_db[chunk * c + col] = tb;
  }
}

// dweight[col] += sum over chunks (in order) of the partials; the same for dbias if given.
template <typename G>
__global__ void NormParamGradFinalizeKernel(const float* partial_dw, const float* partial_db,
                                            int64_t chunks, int c, G* dweight, G* dbias) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= c) return;
  float tw = 0.0f, tb = 0.0f;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    tw += partial_dw[ch * c + col];
    if (dbias != nullptr) tb += partial_db[ch * c + col];
  }
  dweight[col] = FromF32<G>(ToF32(dweight[col]) + tw);
  if (dbias != nullptr) dbias[col] = FromF32<G>(ToF32(dbias[col]) + tb);
}

template <typename T>
const T* Ptr(const Tensor* t) {
  return t ? t->data_as<const T>() : nullptr;
}
template <typename T>
T* MutPtr(const Tensor* t) {
  return t ? t->data_as<T>() : nullptr;
}

bool AllAligned16(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t && !IsAligned(t->data(), 16)) return false;
  }
  return true;
}

template <typename T, typename W, int kVec, bool kRms, bool kResidual>
absl::Status LaunchForward(const Tensor& a, const Tensor* b, const Tensor& weight,
                           const Tensor* bias, float eps, int64_t n, int c,
                           const Tensor* residual_out, const Tensor& out, const Tensor* mean,
                           const Tensor& rstd, cudaStream_t stream) {
  const int64_t blocks = CeilDiv(n, kWarpsPerBlock);
  NormForwardKernel<T, W, kVec, kRms, kResidual><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(
      a.data_as<const T>(), Ptr<T>(b), weight.data_as<const W>(), Ptr<W>(bias), eps, n, c,
      MutPtr<T>(residual_out), out.data_as<T>(), MutPtr<float>(mean), rstd.data_as<float>());
  return CheckLaunch("NormForwardKernel");
}

template <typename T, typename W, int kVec>
absl::Status ForwardVariant(const Tensor& a, const Tensor* b, const Tensor& weight,
                            const Tensor* bias, float eps, int64_t n, int c,
                            const Tensor* residual_out, const Tensor& out, const Tensor* mean,
                            const Tensor& rstd, cudaStream_t stream) {
  const bool rms = bias == nullptr;
  const bool residual = b != nullptr;
#define LOOM_NORM_FWD(RMS, RES)                                                                \
  return LaunchForward<T, W, kVec, RMS, RES>(a, b, weight, bias, eps, n, c, residual_out, out, \
                                             mean, rstd, stream)
  if (rms && residual) LOOM_NORM_FWD(true, true);
  if (rms) LOOM_NORM_FWD(true, false);
  if (residual) LOOM_NORM_FWD(false, true);
  LOOM_NORM_FWD(false, false);
#undef LOOM_NORM_FWD
}

}  // namespace

absl::Status NormForward(const Tensor& a, const Tensor* b, const Tensor& weight, const Tensor* bias,
                         float eps, int64_t n, int64_t c, const Tensor* residual_out,
                         const Tensor& out, const Tensor* mean, const Tensor& rstd) {
  if (c > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("norm: C = ", c,
                                                   " exceeds the CUDA kernel's "
                                                   "int range"));
  }
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(a));
  if (n == 0) return absl::OkStatus();
  const int ci = static_cast<int>(c);
  return DispatchFloat(a.dtype(), "norm activations", [&](auto t_tag) {
    using T = typename decltype(t_tag)::type;
    return DispatchFloat(weight.dtype(), "norm weight", [&](auto w_tag) {
      using W = typename decltype(w_tag)::type;
      constexpr int kVec = kVec128<T>;
      if (c % kVec == 0 && AllAligned16({&a, b, residual_out, &out})) {
        return ForwardVariant<T, W, kVec>(a, b, weight, bias, eps, n, ci, residual_out, out, mean,
                                          rstd, ctx->stream);
      }
      return ForwardVariant<T, W, 1>(a, b, weight, bias, eps, n, ci, residual_out, out, mean, rstd,
                                     ctx->stream);
    });
  });
}

absl::Status NormBackward(const Tensor& dout, const Tensor& x, const Tensor& weight,
                          const Tensor* mean, const Tensor& rstd, int64_t n, int64_t c,
                          const Tensor& dx, const Tensor& dweight, const Tensor* dbias) {
  if (c > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("norm: C = ", c,
                                                   " exceeds the CUDA kernel's "
                                                   "int range"));
  }
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(x));
  if (n == 0) return absl::OkStatus();
  const int ci = static_cast<int>(c);
  const bool rms = mean == nullptr;
  cudaStream_t stream = ctx->stream;

  // Parameter gradients first (dx may overwrite dout). About 64 rows per chunk, at most 256
  // chunks, so the partials stay small and the first kernel has thousands of blocks.
  const int64_t chunks = std::min<int64_t>(256, CeilDiv(n, 64));
  const int64_t rows_per_chunk = CeilDiv(n, chunks);
  LOOM_ASSIGN_OR_RETURN(Tensor partials,
                        Tensor::Empty(Shape({2, chunks, c}), DType::kF32, x.device()));
  float* partial_dw = partials.data_as<float>();
  float* partial_db = dbias ? partial_dw + chunks * c : nullptr;
  LOOM_RETURN_IF_ERROR(DispatchFloat(x.dtype(), "norm activations", [&](auto t_tag) {
    using T = typename decltype(t_tag)::type;
    const dim3 grid(static_cast<unsigned>(CeilDiv(c, kColTile)), static_cast<unsigned>(chunks));
    const dim3 block(kColTile, kRowLanes);
    if (rms) {
      NormParamGradPartialKernel<T, true><<<grid, block, 0, stream>>>(
          dout.data_as<const T>(), x.data_as<const T>(), nullptr, rstd.data_as<const float>(), n,
          ci, rows_per_chunk, partial_dw, partial_db);
    } else {
      NormParamGradPartialKernel<T, false><<<grid, block, 0, stream>>>(
          dout.data_as<const T>(), x.data_as<const T>(), mean->data_as<const float>(),
          rstd.data_as<const float>(), n, ci, rows_per_chunk, partial_dw, partial_db);
    }
    return CheckLaunch("NormParamGradPartialKernel");
  }));
  LOOM_RETURN_IF_ERROR(DispatchFloat(dweight.dtype(), "norm dweight", [&](auto g_tag) {
    using G = typename decltype(g_tag)::type;
    NormParamGradFinalizeKernel<G><<<static_cast<unsigned>(CeilDiv(c, 256)), 256, 0, stream>>>(
        partial_dw, partial_db, chunks, ci, dweight.data_as<G>(), MutPtr<G>(dbias));
    return CheckLaunch("NormParamGradFinalizeKernel");
  }));
  // The partials go back to the caching allocator when `partials` dies; reuse is ordered
  // after these kernels because every op of this device runs on the same stream.

  return DispatchFloat(x.dtype(), "norm activations", [&](auto t_tag) {
    using T = typename decltype(t_tag)::type;
    return DispatchFloat(weight.dtype(), "norm weight", [&](auto w_tag) {
      using W = typename decltype(w_tag)::type;
      constexpr int kVec = kVec128<T>;
      const bool vec = c % kVec == 0 && AllAligned16({&dout, &x, &dx});
      const int64_t blocks = CeilDiv(n, kWarpsPerBlock);
      const float* mp = Ptr<float>(mean);
      const float* rp = rstd.data_as<const float>();
#define LOOM_NORM_DX(VEC, RMS)                                                                 \
  NormBackwardDxKernel<T, W, VEC, RMS><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(            \
      dout.data_as<const T>(), x.data_as<const T>(), weight.data_as<const W>(), mp, rp, n, ci, \
      dx.data_as<T>())
      if (vec && rms) {
        LOOM_NORM_DX(kVec, true);
      } else if (vec) {
        LOOM_NORM_DX(kVec, false);
      } else if (rms) {
        LOOM_NORM_DX(1, true);
      } else {
        LOOM_NORM_DX(1, false);
      }
#undef LOOM_NORM_DX
      return CheckLaunch("NormBackwardDxKernel");
    });
  });
}

}  // namespace loom::ops::cuda
