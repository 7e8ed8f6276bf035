// CUDA kernels of ops/embedding.h.
//
// Backward without float atomics: each position's vocabulary row becomes a sort key (rows
// outside this rank's slice get the key V, which sorts last and is skipped), the
// (key, position) pairs are radix-sorted by key with CUB (a stable sort, so positions stay in
// increasing order within a key), and then the warp sitting at the first position of each run
// of equal keys sums the run's dout rows, in position order and in fp32, for its slice of
// channels and adds the sum into dwte once. Every element of dwte is written by exactly one
// warp in an order fixed by the input, so the result is bitwise reproducible. With per-token
// position ids (packed samples, context-parallel chunks) dwpe is a scatter-add as well and goes
// the same way, keyed by position instead of vocabulary row.
#include <cuda_runtime.h>

#include <algorithm>
#include <cub/device/device_radix_sort.cuh>

#include "absl/strings/str_cat.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/embedding.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

constexpr int kThreads = 256;

// The wpe row of token bt: t, or its position id (-1, no row, for one outside [0, max_t)).
__device__ __forceinline__ int64_t PositionRow(const int32_t* positions, int64_t bt, int64_t t,
                                               int64_t max_t) {
  if (positions == nullptr) return bt % t;
  const int64_t p = positions[bt];
  return p >= 0 && p < max_t ? p : -1;
}

// out[bt, c..c+V) = wte[row, c..] + wpe[pos, c..]; with vec, C is a multiple of V and every
// pointer is 16-byte aligned, so a chunk stays inside one row.
template <typename T>
__global__ void EmbeddingForwardKernel(const int32_t* tokens, const T* wte, const T* wpe, T* out,
                                       int64_t bt_count, int64_t t, int64_t c, int64_t v,
                                       int64_t vocab_start, bool vec, const int32_t* positions,
                                       int64_t max_t) {
  constexpr int V = kVec128<T>;
  const int64_t total = bt_count * c;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x * V;
  for (int64_t base = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * V; base < total;
       base += stride) {
    if (vec) {
      const int64_t bt = base / c, ch = base % c;
      const int64_t row = static_cast<int64_t>(tokens[bt]) - vocab_start;
      float o[V];
      if (row >= 0 && row < v) {
        LoadFloats<V>(wte + row * c + ch, o);
      } else {
#pragma unroll
        for (int i = 0; i < V; ++i) o[i] = 0.0f;
      }
      const int64_t pos = wpe != nullptr ? PositionRow(positions, bt, t, max_t) : -1;
      if (pos >= 0) {
        float p[V];
        LoadFloats<V>(wpe + pos * c + ch, p);
#pragma unroll
        for (int i = 0; i < V; ++i) o[i] += p[i];
      }
      StoreFloats<V>(out + base, o);
    } else {
      for (int64_t e = base; e < total && e < base + V; ++e) {
        const int64_t bt = e / c, ch = e % c;
        const int64_t row = static_cast<int64_t>(tokens[bt]) - vocab_start;
        float o = row >= 0 && row < v ? ToF32(wte[row * c + ch]) : 0.0f;
        const int64_t pos = wpe != nullptr ? PositionRow(positions, bt, t, max_t) : -1;
        if (pos >= 0) o += ToF32(wpe[pos * c + ch]);
        out[e] = FromF32<T>(o);
      }
    }
  }
}

// dwpe[t, ch] += sum over b of dout[b, t, ch], in batch order.
template <typename G, typename D>
__global__ void PositionGradKernel(const G* dout, D* dwpe, int64_t b, int64_t t, int64_t c) {
  const int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (e >= t * c) return;
  float s = 0.0f;
  for (int64_t i = 0; i < b; ++i) s += ToF32(dout[i * t * c + e]);
  dwpe[e] = FromF32<D>(ToF32(dwpe[e]) + s);
}

__global__ void SortKeysKernel(const int32_t* tokens, int64_t n, int64_t v, int64_t vocab_start,
                               uint32_t* keys, int32_t* positions) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const int64_t row = static_cast<int64_t>(tokens[i]) - vocab_start;
  keys[i] = static_cast<uint32_t>(row >= 0 && row < v ? row : v);
  positions[i] = static_cast<int32_t>(i);
}

// The same pairs keyed by position id: ids outside [0, max_t) get the key max_t (skipped).
__global__ void PositionKeysKernel(const int32_t* position_ids, int64_t n, int64_t max_t,
                                   uint32_t* keys, int32_t* positions) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const int64_t p = position_ids[i];
  keys[i] = static_cast<uint32_t>(p >= 0 && p < max_t ? p : max_t);
  positions[i] = static_cast<int32_t>(i);
}

// Channels one lane sums: lane, lane + 32, ..., so a warp covers 32 * kLaneChannels channels
// with coalesced loads.
constexpr int kLaneChannels = 8;
constexpr int kWarpChannels = 32 * kLaneChannels;
constexpr int kWarpsPerBlock = kThreads / 32;

template <typename G, typename D>
__global__ void TokenGradKernel(const uint32_t* keys, const int32_t* positions, const G* dout,
                                D* dwte, int64_t n, int64_t c, uint32_t foreign_key) {
  const int64_t i = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= n) return;
  const uint32_t key = keys[i];
  // Only the warp at the start of a run works; the run's rows all add into dwte[key].
  if (key == foreign_key || (i > 0 && keys[i - 1] == key)) return;
  const int64_t c0 = blockIdx.y * int64_t{kWarpChannels} + lane;
  float acc[kLaneChannels];
#pragma unroll
  for (int k = 0; k < kLaneChannels; ++k) acc[k] = 0.0f;
  for (int64_t j = i; j < n && keys[j] == key; ++j) {
    const G* d = dout + static_cast<int64_t>(positions[j]) * c;
#pragma unroll
    for (int k = 0; k < kLaneChannels; ++k) {
      const int64_t ch = c0 + 32 * k;
      if (ch < c) acc[k] += ToF32(d[ch]);
    }
  }
  D* w = dwte + static_cast<int64_t>(key) * c;
#pragma unroll
  for (int k = 0; k < kLaneChannels; ++k) {
    const int64_t ch = c0 + 32 * k;
    if (ch < c) w[ch] = FromF32<D>(ToF32(w[ch]) + acc[k]);
  }
}

int GridStrideBlocks(int64_t chunks, const DeviceContext* ctx) {
  const int64_t cap = int64_t{ctx->num_sms} * 32;
  return static_cast<int>(std::max<int64_t>(1, std::min(CeilDiv(chunks, kThreads), cap)));
}

template <typename T>
absl::Status LaunchForward(DeviceContext* ctx, const Tensor& tokens, const Tensor& wte,
                           const Tensor* wpe, const Tensor& out, int64_t b, int64_t t, int64_t c,
                           int64_t v, int64_t vocab_start, const Tensor* positions) {
  constexpr int V = kVec128<T>;
  const void* wpe_ptr = wpe != nullptr ? wpe->data() : nullptr;
  const bool vec = c % V == 0 && IsAligned(wte.data(), 16) && IsAligned(out.data(), 16) &&
                   (wpe_ptr == nullptr || IsAligned(wpe_ptr, 16));
  EmbeddingForwardKernel<T>
      <<<GridStrideBlocks(CeilDiv(b * t * c, V), ctx), kThreads, 0, ctx->stream>>>(
          tokens.data_as<int32_t>(), static_cast<const T*>(wte.data()),
          static_cast<const T*>(wpe_ptr), static_cast<T*>(out.data()), b * t, t, c, v, vocab_start,
          vec, positions != nullptr ? positions->data_as<int32_t>() : nullptr,
          wpe != nullptr ? wpe->dim(0) : 0);
  return CheckLaunch("EmbeddingForwardKernel");
}

size_t RoundUp256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// The radix sort's bits for keys in [0, max_key].
int SortBits(int64_t max_key) {
  int end_bit = 1;
  while (end_bit < 32 && (uint64_t{1} << end_bit) <= static_cast<uint64_t>(max_key)) ++end_bit;
  return end_bit;
}

absl::StatusOr<size_t> SortTempBytes(int num_items, int end_bit, cudaStream_t stream) {
  size_t bytes = 0;
  LOOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), num_items, 0, end_bit,
      stream));
  return bytes;
}

template <typename G, typename D>
absl::Status LaunchBackward(DeviceContext* ctx, const Tensor& tokens, const Tensor& dout,
                            const Tensor& dwte, const Tensor* dwpe, int64_t b, int64_t t, int64_t c,
                            int64_t v, int64_t vocab_start, const Tensor* positions) {
  const int64_t n = b * t;
  const G* dout_ptr = static_cast<const G*>(dout.data());
  // Without position ids the position gradient is a plain sum over the batch.
  if (dwpe != nullptr && positions == nullptr && t * c > 0) {
    PositionGradKernel<G, D><<<CeilDiv(t * c, kThreads), kThreads, 0, ctx->stream>>>(
        dout_ptr, static_cast<D*>(dwpe->data()), b, t, c);
    LOOM_RETURN_IF_ERROR(CheckLaunch("PositionGradKernel"));
  }
  const bool position_sort = dwpe != nullptr && positions != nullptr;
  if (n == 0 || c == 0 || (v == 0 && !position_sort)) return absl::OkStatus();
  const int64_t max_t = position_sort ? dwpe->dim(0) : 0;
  if (n > INT32_MAX || v >= UINT32_MAX || max_t >= UINT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("EmbeddingBackward: B*T = ", n, ", V = ", v,
                                                   " and maxT = ", max_t,
                                                   " must fit the 32-bit sort keys"));
  }
  // Radix-sort only the bits a key can use (keys are at most v, or max_t).
  const int token_bits = SortBits(v), position_bits = SortBits(max_t);
  const int num_items = static_cast<int>(n);
  LOOM_ASSIGN_OR_RETURN(size_t cub_bytes, SortTempBytes(num_items, token_bits, ctx->stream));
  if (position_sort) {
    LOOM_ASSIGN_OR_RETURN(size_t pos_bytes, SortTempBytes(num_items, position_bits, ctx->stream));
    cub_bytes = std::max(cub_bytes, pos_bytes);
  }
  // One scratch for both sorts: they run one after the other on the op stream.
  const size_t array_bytes = RoundUp256(n * sizeof(uint32_t));
  LOOM_ASSIGN_OR_RETURN(void* scratch, OpScratch(ctx, 4 * array_bytes + RoundUp256(cub_bytes)));
  char* base = static_cast<char*>(scratch);
  uint32_t* keys_in = reinterpret_cast<uint32_t*>(base);
  uint32_t* keys_out = reinterpret_cast<uint32_t*>(base + array_bytes);
  int32_t* pos_in = reinterpret_cast<int32_t*>(base + 2 * array_bytes);
  int32_t* pos_out = reinterpret_cast<int32_t*>(base + 3 * array_bytes);
  void* cub_temp = base + 4 * array_bytes;
  const dim3 grid(static_cast<unsigned>(CeilDiv(n, kWarpsPerBlock)),
                  static_cast<unsigned>(CeilDiv(c, kWarpChannels)));

  if (position_sort) {
    // dwpe[p] += the dout rows of the tokens at position p, in token order.
    PositionKeysKernel<<<CeilDiv(n, kThreads), kThreads, 0, ctx->stream>>>(
        positions->data_as<int32_t>(), n, max_t, keys_in, pos_in);
    LOOM_RETURN_IF_ERROR(CheckLaunch("PositionKeysKernel"));
    size_t bytes = cub_bytes;
    LOOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_temp, bytes, keys_in, keys_out, pos_in,
                                                    pos_out, num_items, 0, position_bits,
                                                    ctx->stream));
    TokenGradKernel<G, D><<<grid, kThreads, 0, ctx->stream>>>(keys_out, pos_out, dout_ptr,
                                                              static_cast<D*>(dwpe->data()), n, c,
                                                              static_cast<uint32_t>(max_t));
    LOOM_RETURN_IF_ERROR(CheckLaunch("TokenGradKernel (positions)"));
  }

  if (v == 0) return absl::OkStatus();  // no vocabulary rows here (dwpe done above)
  SortKeysKernel<<<CeilDiv(n, kThreads), kThreads, 0, ctx->stream>>>(
      tokens.data_as<int32_t>(), n, v, vocab_start, keys_in, pos_in);
  LOOM_RETURN_IF_ERROR(CheckLaunch("SortKeysKernel"));
  size_t bytes = cub_bytes;
  LOOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_temp, bytes, keys_in, keys_out, pos_in,
                                                  pos_out, num_items, 0, token_bits, ctx->stream));
  TokenGradKernel<G, D><<<grid, kThreads, 0, ctx->stream>>>(
      keys_out, pos_out, dout_ptr, static_cast<D*>(dwte.data()), n, c, static_cast<uint32_t>(v));
  return CheckLaunch("TokenGradKernel");
}

template <typename G>
absl::Status LaunchBackwardForGrad(DeviceContext* ctx, const Tensor& tokens, const Tensor& dout,
                                   const Tensor& dwte, const Tensor* dwpe, int64_t b, int64_t t,
                                   int64_t c, int64_t v, int64_t vocab_start,
                                   const Tensor* positions) {
  if (dwte.dtype() == DType::kBF16) {
    return LaunchBackward<G, bf16_t>(ctx, tokens, dout, dwte, dwpe, b, t, c, v, vocab_start,
                                     positions);
  }
  return LaunchBackward<G, float>(ctx, tokens, dout, dwte, dwpe, b, t, c, v, vocab_start,
                                  positions);
}

}  // namespace

absl::Status EmbeddingForward(const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                              const Tensor& out, int64_t b, int64_t t, int64_t c, int64_t v,
                              int64_t vocab_start, const Tensor* positions) {
  if (b * t * c == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(tokens));
  if (wte.dtype() == DType::kBF16) {
    return LaunchForward<bf16_t>(ctx, tokens, wte, wpe, out, b, t, c, v, vocab_start, positions);
  }
  return LaunchForward<float>(ctx, tokens, wte, wpe, out, b, t, c, v, vocab_start, positions);
}

absl::Status EmbeddingBackward(const Tensor& tokens, const Tensor& dout, const Tensor& dwte,
                               const Tensor* dwpe, int64_t b, int64_t t, int64_t c, int64_t v,
                               int64_t vocab_start, const Tensor* positions) {
  if (b * t * c == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(tokens));
  if (dout.dtype() == DType::kBF16) {
    return LaunchBackwardForGrad<bf16_t>(ctx, tokens, dout, dwte, dwpe, b, t, c, v, vocab_start,
                                         positions);
  }
  return LaunchBackwardForGrad<float>(ctx, tokens, dout, dwte, dwpe, b, t, c, v, vocab_start,
                                      positions);
}

}  // namespace loom::ops::cuda
