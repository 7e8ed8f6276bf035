// CUDA kernels of ring attention's block step (ops/attention_block.h): one block of query rows
// against one block of key/value rows, each block two chunks of the sequence with their global
// positions, f32 or bf16 activations with fp32 softmax statistics and accumulators, any HD up
// to 128 (compiled for 64 and 128, smaller head dims zero-padded in shared memory), grouped-query
// heads, on the device's op stream. Called by ops/attention_block.cc after its checks.
//
// The design is that of the SIMT kernels of ops/cuda/attention.h (64 x 64 tiles, 256 threads,
// fp32 FMAs; for bf16 too: there are no tensor-core block kernels yet), with the causal rule
// replaced by positions (ops/cuda/attention_block_tiles.h):
//   forward: a CUDA block owns 64 query rows of one (batch, head) and walks the key tiles up to
//     its visible prefix with an online softmax; at the end it overwrites (first) or merges its
//     partial result into out and lse by log-sum-exp. Rows that see no key of the block leave
//     out and lse as they were (first: out 0, lse -inf).
//   backward, deterministic and free of atomics: D = rowsum(dO * O) of the final output, then a
//     key-tile kernel (dK, dV over every query head of the group and the query tiles that see the
//     tile) and a query-tile kernel (dQ over the visible key tiles), each ADDING its sums into
//     the K/V columns of dkv_qkv or the Q columns of dq_qkv: each element has one writer, so
//     nothing races, and each sum runs in a fixed order.
// segments: null, or i32 [B, seq_len] segment ids over the whole sequence, indexed by global
// position: query i sees key j when pos(j) <= pos(i) and the two positions' ids are equal.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "ops/attention_block.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

absl::Status AttentionBlockForward(const Tensor& q_qkv, const Tensor& kv_qkv, int64_t b, int64_t t,
                                   int nh, int nkv, int hd, ChunkedPositions q_pos,
                                   ChunkedPositions kv_pos, bool first, const Tensor& out,
                                   const Tensor& lse, const Tensor* segments);

absl::Status AttentionBlockBackward(const Tensor& dout, const Tensor& q_qkv, const Tensor& kv_qkv,
                                    const Tensor& out, const Tensor& lse, int64_t b, int64_t t,
                                    int nh, int nkv, int hd, ChunkedPositions q_pos,
                                    ChunkedPositions kv_pos, const Tensor& dq_qkv,
                                    const Tensor& dkv_qkv, const Tensor* segments);

}  // namespace loom::ops::cuda
