// Shared between the attention kernel files (ops/cuda/attention.cu: checks, dispatch, the
// fp32-math SIMT kernels; ops/cuda/attention_tc.cu: the bf16 tensor-core kernels). Not part of
// the op contract; include from those two files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda::attn {

inline constexpr int kTile = 64;  // query rows and keys per tile in every kernel
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// Geometry of one attention call. Kernels are compiled for a padded head dim HDP (64 or 128);
// the real hd <= HDP, and the columns beyond it are zero in shared memory (they add nothing to
// any dot product) and never written.
struct Geometry {
  int64_t b;           // batch
  int64_t t;           // sequence length
  int hd;              // head dim
  int nh, nkv, group;  // query heads, kv heads, query heads per kv head
  int64_t qkv_row;     // elements per token of qkv: (nh + 2 nkv) * hd
  int64_t out_row;     // elements per token of out: nh * hd
  float scale_log2;    // log2(e) / sqrt(hd): scores go straight to the exp2 domain
  bool vec;            // 128-bit loads are safe (aligned rows, hd a multiple of the vector)
  const int32_t* seg = nullptr;  // [B, T] segment ids (packed examples), or null: one per row
};

// Block-diagonal causal masking: may query `row` see key `col` (both < t) of batch element bi,
// beyond the causal rule? Always without segments; else only inside the query's own segment.
__device__ __forceinline__ bool SameSegment(const Geometry& geo, int64_t bi, int64_t row,
                                            int64_t col) {
  return geo.seg == nullptr || geo.seg[bi * geo.t + row] == geo.seg[bi * geo.t + col];
}

// bf16 tensor-core (WMMA) kernels, HDP 64 or 128. dsum: f32 [B, NH, T] = rowsum(dO * O).
template <int HDP>
absl::Status ForwardTensorCore(const Tensor& qkv, const Geometry& geo, const Tensor& out,
                               const Tensor& lse, cudaStream_t stream);
template <int HDP>
absl::Status BackwardTensorCore(const Tensor& dout, const Tensor& qkv, const Tensor& lse,
                                const Tensor& dsum, const Geometry& geo, const Tensor& dqkv,
                                cudaStream_t stream);

}  // namespace loom::ops::cuda::attn
