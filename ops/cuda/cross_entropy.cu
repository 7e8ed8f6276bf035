#include <cuda_runtime.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cross_entropy.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kThreads = 256;

// A running softmax denominator: s = sum of exp(x - m) over the values seen, m their max.
struct MaxSum {
  float m;
  float s;
};

// Commutative (same result for (a, b) and (b, a)), so xor-shuffle trees agree on every lane.
__device__ __forceinline__ MaxSum Merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return MaxSum{m, 0.0f};
  return MaxSum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ void Push(MaxSum& st, float x) {
  if (x > st.m) {
    st.s = st.s * expf(st.m - x) + 1.0f;
    st.m = x;
  } else if (x != -INFINITY) {  // also lets a NaN through, so NaN logits give a NaN loss
    st.s += expf(x - st.m);
  }
}

// Merges the pairs of all threads of the block in a fixed order; every thread gets the result.
__device__ MaxSum BlockMerge(MaxSum v, MaxSum* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    v = Merge(
        v, MaxSum{__shfl_xor_sync(0xffffffffu, v.m, off), __shfl_xor_sync(0xffffffffu, v.s, off)});
  }
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / 32) ? scratch[lane] : MaxSum{-INFINITY, 0.0f};
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    v = Merge(
        v, MaxSum{__shfl_xor_sync(0xffffffffu, v.m, off), __shfl_xor_sync(0xffffffffu, v.s, off)});
  }
  return v;
}

// Calls f(column, value) for every column of the row, kVec consecutive columns per access.
template <int kVec, typename T, typename F>
__device__ __forceinline__ void ForEachColumn(const T* row, int64_t v, F&& f) {
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * kVec; j < v;
       j += static_cast<int64_t>(blockDim.x) * kVec) {
    float x[kVec];
    LoadFloats<kVec>(row + j, x);
#pragma unroll
    for (int k = 0; k < kVec; ++k) f(j + k, x[k]);
  }
}

// drow = dloss * (exp(x - mx) / sum - onehot(local_target)) on the valid columns, 0 beyond.
// Each thread reads a vector before writing it back, so drow may alias row.
template <int kVec, typename T>
__device__ __forceinline__ void WriteGradRow(const T* row, T* drow, int64_t v, int64_t valid,
                                             int64_t local_target, float mx, float sum,
                                             float dloss) {
  const float scale = dloss / sum;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * kVec; j < v;
       j += static_cast<int64_t>(blockDim.x) * kVec) {
    float x[kVec], g[kVec];
    LoadFloats<kVec>(row + j, x);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int64_t col = j + k;
      float d = col < valid ? expf(x[k] - mx) * scale : 0.0f;
      if (col == local_target && col < valid) d -= dloss;
      g[k] = d;
    }
    StoreFloats<kVec>(drow + j, g);
  }
}

template <int kVec, typename T>
__device__ __forceinline__ void ZeroRow(T* drow, int64_t v) {
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * kVec; j < v;
       j += static_cast<int64_t>(blockDim.x) * kVec) {
    float z[kVec];
#pragma unroll
    for (int k = 0; k < kVec; ++k) z[k] = 0.0f;
    StoreFloats<kVec>(drow + j, z);
  }
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    CrossEntropyFusedKernel(const T* logits, const int32_t* targets, int64_t v, int64_t valid,
                            float* losses, T* dlogits, float dloss) {
  __shared__ MaxSum scratch[32];
  __shared__ float target_logit;
  const int64_t row = blockIdx.x;
  const T* x = logits + row * v;
  T* dx = dlogits ? dlogits + row * v : nullptr;
  const int32_t target = targets[row];
  if (target < 0) {  // ignored row (uniform over the block)
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (dx) ZeroRow<kVec>(dx, v);
    return;
  }
  // Read before BlockMerge's barriers, hence before any thread overwrites the row.
  if (threadIdx.x == 0) target_logit = target < valid ? ToF32(x[target]) : NAN;
  MaxSum st{-INFINITY, 0.0f};
  ForEachColumn<kVec>(x, v, [&](int64_t col, float val) {
    if (col < valid) Push(st, val);
  });
  st = BlockMerge(st, scratch);
  if (threadIdx.x == 0) losses[row] = logf(st.s) + st.m - target_logit;
  if (dx) WriteGradRow<kVec>(x, dx, v, valid, target, st.m, st.s, dloss);
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    LogitsRowMaxKernel(const T* logits, int64_t v, int64_t valid, float* row_max) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  float mx = -INFINITY;
  ForEachColumn<kVec>(logits + row * v, v, [&](int64_t col, float val) {
    if (col < valid) mx = fmaxf(mx, val);
  });
  mx = BlockMax(mx, scratch);
  if (threadIdx.x == 0) row_max[row] = mx;
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    LogitsSumExpKernel(const T* logits, const float* global_max, int64_t v, int64_t valid,
                       float* sum_exp) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float mx = global_max[row];
  float s = 0.0f;
  ForEachColumn<kVec>(logits + row * v, v, [&](int64_t col, float val) {
    if (col < valid) s += expf(val - mx);
  });
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) sum_exp[row] = s;
}

template <typename T>
__global__ void TargetLogitKernel(const T* logits, const int32_t* targets, int64_t vocab_start,
                                  int64_t n, int64_t v, float* target_logit) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= n) return;
  const int32_t target = targets[row];
  const int64_t local = static_cast<int64_t>(target) - vocab_start;
  target_logit[row] =
      (target >= 0 && local >= 0 && local < v) ? ToF32(logits[row * v + local]) : 0.0f;
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    FinishKernel(const T* logits, const int32_t* targets, int64_t vocab_start,
                 const float* global_max, const float* global_sum_exp,
                 const float* global_target_logit, int64_t v, int64_t valid, float* losses,
                 T* dlogits, float dloss) {
  const int64_t row = blockIdx.x;
  T* dx = dlogits ? dlogits + row * v : nullptr;
  const int32_t target = targets[row];
  if (target < 0) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (dx) ZeroRow<kVec>(dx, v);
    return;
  }
  const float mx = global_max[row];
  const float sum = global_sum_exp[row];
  if (threadIdx.x == 0) losses[row] = logf(sum) + mx - global_target_logit[row];
  if (dx) {
    WriteGradRow<kVec>(logits + row * v, dx, v, valid, static_cast<int64_t>(target) - vocab_start,
                       mx, sum, dloss);
  }
}

// Runs body.template operator()<T, kVec>() with T from the logits' dtype and kVec 128-bit wide
// when every row starts 16-byte aligned (V a multiple of the vector, aligned base pointers).
template <typename Body>
absl::Status Dispatch(const Tensor& logits, const Tensor* dlogits, int64_t v, const char* op,
                      Body&& body) {
  auto aligned = [&](size_t elems) {
    return v % static_cast<int64_t>(elems) == 0 && IsAligned(logits.data(), 16) &&
           (dlogits == nullptr || IsAligned(dlogits->data(), 16));
  };
  switch (logits.dtype()) {
    case DType::kF32:
      if (aligned(kVec128<float>)) return body.template operator()<float, kVec128<float>>();
      return body.template operator()<float, 1>();
    case DType::kBF16:
      if (aligned(kVec128<bf16_t>)) return body.template operator()<bf16_t, kVec128<bf16_t>>();
      return body.template operator()<bf16_t, 1>();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": unsupported logits dtype ", std::string(DTypeName(logits.dtype()))));
  }
}

template <typename T>
T* OptPtr(const Tensor* t) {
  return t ? t->data_as<T>() : nullptr;
}

unsigned Rows(int64_t n) { return static_cast<unsigned>(n); }

struct FusedBody {
  const Tensor &logits, &targets, &losses;
  const Tensor* dlogits;
  int64_t n, v, valid;
  float dloss;
  cudaStream_t stream;
  template <typename T, int kVec>
  absl::Status operator()() const {
    CrossEntropyFusedKernel<T, kVec><<<Rows(n), kThreads, 0, stream>>>(
        logits.data_as<const T>(), targets.data_as<const int32_t>(), v, valid,
        losses.data_as<float>(), OptPtr<T>(dlogits), dloss);
    return CheckLaunch("CrossEntropyFusedKernel");
  }
};

struct RowMaxBody {
  const Tensor &logits, &row_max;
  int64_t n, v, valid;
  cudaStream_t stream;
  template <typename T, int kVec>
  absl::Status operator()() const {
    LogitsRowMaxKernel<T, kVec><<<Rows(n), kThreads, 0, stream>>>(logits.data_as<const T>(), v,
                                                                  valid, row_max.data_as<float>());
    return CheckLaunch("LogitsRowMaxKernel");
  }
};

struct SumExpBody {
  const Tensor &logits, &global_max, &sum_exp;
  int64_t n, v, valid;
  cudaStream_t stream;
  template <typename T, int kVec>
  absl::Status operator()() const {
    LogitsSumExpKernel<T, kVec><<<Rows(n), kThreads, 0, stream>>>(
        logits.data_as<const T>(), global_max.data_as<const float>(), v, valid,
        sum_exp.data_as<float>());
    return CheckLaunch("LogitsSumExpKernel");
  }
};

struct FinishBody {
  const Tensor &logits, &targets, &global_max, &global_sum_exp, &global_target_logit, &losses;
  const Tensor* dlogits;
  int64_t vocab_start, n, v, valid;
  float dloss;
  cudaStream_t stream;
  template <typename T, int kVec>
  absl::Status operator()() const {
    FinishKernel<T, kVec><<<Rows(n), kThreads, 0, stream>>>(
        logits.data_as<const T>(), targets.data_as<const int32_t>(), vocab_start,
        global_max.data_as<const float>(), global_sum_exp.data_as<const float>(),
        global_target_logit.data_as<const float>(), v, valid, losses.data_as<float>(),
        OptPtr<T>(dlogits), dloss);
    return CheckLaunch("VocabParallelCrossEntropyFinishKernel");
  }
};

}  // namespace

absl::Status CrossEntropyForwardBackward(const Tensor& logits, const Tensor& targets, int64_t n,
                                         int64_t v, int64_t valid, const Tensor& losses,
                                         const Tensor* dlogits, float dloss) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(logits));
  if (n == 0) return absl::OkStatus();
  return Dispatch(logits, dlogits, v, "CrossEntropyForwardBackward",
                  FusedBody{logits, targets, losses, dlogits, n, v, valid, dloss, ctx->stream});
}

absl::Status LogitsRowMax(const Tensor& logits, int64_t n, int64_t v, int64_t valid,
                          const Tensor& row_max) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(logits));
  if (n == 0) return absl::OkStatus();
  return Dispatch(logits, nullptr, v, "LogitsRowMax",
                  RowMaxBody{logits, row_max, n, v, valid, ctx->stream});
}

absl::Status LogitsSumExp(const Tensor& logits, const Tensor& global_max, int64_t n, int64_t v,
                          int64_t valid, const Tensor& sum_exp) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(logits));
  if (n == 0) return absl::OkStatus();
  return Dispatch(logits, nullptr, v, "LogitsSumExp",
                  SumExpBody{logits, global_max, sum_exp, n, v, valid, ctx->stream});
}

absl::Status TargetLogit(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                         int64_t n, int64_t v, const Tensor& target_logit) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(logits));
  if (n == 0) return absl::OkStatus();
  const unsigned blocks = static_cast<unsigned>(CeilDiv(n, 256));
  switch (logits.dtype()) {
    case DType::kF32:
      TargetLogitKernel<float><<<blocks, 256, 0, ctx->stream>>>(
          logits.data_as<const float>(), targets.data_as<const int32_t>(), vocab_start, n, v,
          target_logit.data_as<float>());
      break;
    case DType::kBF16:
      TargetLogitKernel<bf16_t><<<blocks, 256, 0, ctx->stream>>>(
          logits.data_as<const bf16_t>(), targets.data_as<const int32_t>(), vocab_start, n, v,
          target_logit.data_as<float>());
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("TargetLogit: unsupported logits dtype ",
                                                     std::string(DTypeName(logits.dtype()))));
  }
  return CheckLaunch("TargetLogitKernel");
}

absl::Status VocabParallelCrossEntropyFinish(const Tensor& logits, const Tensor& targets,
                                             int64_t vocab_start, const Tensor& global_max,
                                             const Tensor& global_sum_exp,
                                             const Tensor& global_target_logit, int64_t n,
                                             int64_t v, int64_t valid, const Tensor& losses,
                                             const Tensor* dlogits, float dloss) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(logits));
  if (n == 0) return absl::OkStatus();
  return Dispatch(logits, dlogits, v, "VocabParallelCrossEntropyFinish",
                  FinishBody{logits, targets, global_max, global_sum_exp, global_target_logit,
                             losses, dlogits, vocab_start, n, v, valid, dloss, ctx->stream});
}

}  // namespace loom::ops::cuda
