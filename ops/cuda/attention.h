// CUDA causal grouped-query attention (ops/attention.h), f32 or bf16 activations with fp32
// math, any HD up to 128 (kernels compiled for 64 and 128; a smaller head dim is zero-padded in
// shared memory), on the device's op stream. Called by ops/attention.cc after its checks.
//
// Forward (FlashAttention-2 style): a block owns 64 query rows of one (batch, head), keeps
// them in shared memory, and walks the 64-key tiles up to the causal limit with an online
// softmax (running max and sum per row, the output accumulator in registers). The T x T
// matrix never exists; out and the per-row log-sum-exp are written once at the end.
//
// Backward, deterministic and free of atomics: a small kernel computes D = rowsum(dO * O); a
// key-tile kernel owns 64 keys of one (batch, kv head), recomputes P from the lse for every
// query tile at or after it and every query head of the group, and accumulates dK and dV in
// registers; a query-tile kernel owns 64 query rows and accumulates dQ the same way. Each
// element of dqkv has exactly one writer, and each sum runs in a fixed order.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

absl::Status AttentionForward(const Tensor& qkv, int64_t b, int64_t t, int nh, int nkv, int hd,
                              const Tensor& out, const Tensor& lse);

absl::Status AttentionBackward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                               const Tensor& lse, int64_t b, int64_t t, int nh, int nkv, int hd,
                               const Tensor& dqkv);

}  // namespace loom::ops::cuda
