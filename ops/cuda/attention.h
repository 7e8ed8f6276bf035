// CUDA causal grouped-query attention (ops/attention.h), f32 or bf16 activations with fp32
// softmax statistics and accumulators, any HD up to 128 (kernels compiled for 64 and 128; a
// smaller head dim is zero-padded in shared memory), on the device's op stream. Called by
// ops/attention.cc after its checks.
//
// Forward (FlashAttention-2 style): a block owns 64 query rows of one (batch, head), keeps
// them in shared memory, and walks the 64-key tiles up to the causal limit with an online
// softmax (running max and sum per row, the output accumulator on chip). The T x T matrix
// never exists; out and the per-row log-sum-exp are written once at the end.
//
// Backward, deterministic and free of atomics: a small kernel computes D = rowsum(dO * O); a
// key-tile kernel owns 64 keys of one (batch, kv head), recomputes P from the lse for every
// query tile at or after it and every query head of the group, and accumulates dK and dV on
// chip; a query-tile kernel owns 64 query rows and accumulates dQ the same way. Each element
// of dqkv has exactly one writer, and each sum runs in a fixed order.
//
// Two kernel families implement this: SIMT kernels doing fp32 FMAs (attention.cu; f32, and
// bf16 on request) and tensor-core kernels on bf16 operands (attention_tc.cu; bf16 default).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

// Which kernels run bf16 attention: the tensor-core (WMMA) kernels of attention_tc.cu by
// default, or the fp32-math SIMT kernels that f32 uses (slower; a reference when checking the
// tensor-core path on a new GPU or toolkit). LOOM_ATTENTION_KERNEL=simt in the environment
// selects SIMT at start-up; tests switch with SetBf16AttentionKernel.
enum class Bf16AttentionKernel { kTensorCore, kSimt };
void SetBf16AttentionKernel(Bf16AttentionKernel kernel);
Bf16AttentionKernel GetBf16AttentionKernel();

// segments: null, or i32 [B, T] segment ids (ops/attention.h): a key of another segment is
// masked like a future one. A query tile's first key tiles may then be wholly masked for some
// rows, so the online softmax keeps its running max at -inf until a visible key arrives.
absl::Status AttentionForward(const Tensor& qkv, int64_t b, int64_t t, int nh, int nkv, int hd,
                              const Tensor& out, const Tensor& lse,
                              const Tensor* segments = nullptr);

absl::Status AttentionBackward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                               const Tensor& lse, int64_t b, int64_t t, int nh, int nkv, int hd,
                               const Tensor& dqkv, const Tensor* segments = nullptr);

}  // namespace loom::ops::cuda
