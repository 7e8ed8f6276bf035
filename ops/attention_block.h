// Causal attention between one block of query rows and one block of key/value rows, each block
// two chunks of a sequence with their global positions: the compute step of ring attention
// (context parallelism, parallel/ring_attention.h). Query row i sees key row j when
// position(j) <= position(i) (and, with segment ids, when both positions lie in the same
// segment); partial results merge by log-sum-exp, so calling the forward once per key block (in
// any order) gives the attention over all of them.
//
// Both blocks use the packed qkv layout of ops/attention.h ([B, T, (NH + 2*NKV) * HD], grouped
// query heads): the query side reads its Q columns, the key side its K and V columns. CPU (and
// the test device, which runs the CPU kernels) and CUDA (ops/cuda/attention_block.h).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// The global positions of a block's 2 * chunk rows: rows [0, chunk) are positions
// start0 .. start0 + chunk - 1, rows [chunk, 2 * chunk) are start1 .. start1 + chunk - 1, with
// start0 + chunk <= start1, so positions increase with the row and the keys a query sees are a
// prefix of the block (without segments; with them a contiguous run of rows).
struct ChunkedPositions {
  int64_t chunk = 0;
  int64_t start0 = 0, start1 = 0;
  int64_t At(int64_t row) const { return row < chunk ? start0 + row : start1 + (row - chunk); }
  // How many rows have a position <= pos (the visible prefix for a query at pos).
  int64_t CountThrough(int64_t pos) const {
    auto clamp = [&](int64_t v) { return v < 0 ? 0 : (v > chunk ? chunk : v); };
    return clamp(pos - start0 + 1) + clamp(pos - start1 + 1);
  }
};

// segments (packed fine-tuning examples; nullptr = one document per sequence): i32 [B, S] on
// q_qkv's device, the segment id of every position of the WHOLE sequence (S = seq_len, at least
// every position either block holds), indexed by global position (ChunkedPositions::At): query
// row i sees key row j when At(j) <= At(i) and segments[b][At(j)] == segments[b][At(i)]. Ids must
// not decrease along the sequence (as in ops/attention.h; the CPU kernels check it), so the keys
// a query sees form one contiguous run of the block's rows: every rank of the ring holds the
// whole sequence's ids, which are cheap (one int per position, no activations).
//
// Forward of q's rows against kv's rows. out: [B, T, NH * HD] and lse: f32 [B, NH, T] hold the
// running result: with `first` they are overwritten (rows that see no key get out 0, lse -inf),
// otherwise this block's softmax is merged into them by log-sum-exp.
absl::Status AttentionBlockForward(const Tensor& q_qkv, const Tensor& kv_qkv, int n_head,
                                   int n_kv_head, ChunkedPositions q_pos, ChunkedPositions kv_pos,
                                   bool first, const Tensor& out, const Tensor& lse,
                                   const Tensor* segments = nullptr);

// Backward of the same block pair, given the final out and lse over all key blocks: ADDS
// dL/dQ into the Q columns of dq_qkv and dL/dK, dL/dV into the K and V columns of dkv_qkv (the
// other columns are not touched).
absl::Status AttentionBlockBackward(const Tensor& dout, const Tensor& q_qkv, const Tensor& kv_qkv,
                                    const Tensor& out, const Tensor& lse, int n_head, int n_kv_head,
                                    ChunkedPositions q_pos, ChunkedPositions kv_pos,
                                    const Tensor& dq_qkv, const Tensor& dkv_qkv,
                                    const Tensor* segments = nullptr);

}  // namespace loom::ops
