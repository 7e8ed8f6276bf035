// Ring attention: causal self-attention over a sequence split among the ranks of a context-
// parallel group (parallel.cp, docs/parallel.md). The sequence is cut into 2 * cp chunks and
// cp rank r holds chunks r and 2*cp-1-r (ContextChunks), so every rank has the same causal work
// (Megatron's and Llama 3's load balancing). Each rank keeps its packed qkv block; the key/value
// blocks travel around the ring (rank r sends to r+1 and receives from r-1, cp-1 hops), and each
// rank merges the attention of its queries over every block by log-sum-exp
// (ops/attention_block.h). Backward sends the blocks around again with an accumulator of their
// dK/dV beside them, which after cp hops is back at the block's owner, holding the gradient from
// every rank's queries.
//
// Overlap: each hop of the blocks is posted (BatchSendRecvAsync) before the block that arrived
// last is computed and waited for after it, so the transfer runs behind the compute (NCCL and
// the test device progress on their own streams; on the CPU a helper thread drives MPI while a
// block computes). In backward a rank computes its share of a block's dK/dV into a fresh
// partial while that block's accumulator is still arriving, adds the two afterwards and posts
// the sum on: the accumulator's hop runs behind the next block's compute too. RingTimes reports
// the seconds spent waiting for each.
//
// What it costs: the blocks travel as whole qkv rows (Q included, which the receiver ignores):
// simpler and the same buffers as the local qkv, at (NH + 2*NKV) / (2*NKV) times the bytes of
// K and V alone (1.5x for multi-head attention).
#pragma once

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "ops/attention_block.h"
#include "parallel/communicator.h"
#include "runtime/tensor.h"

namespace loom {

// The chunks of a sequence of seq_len tokens that cp rank `rank` holds: chunk seq_len / (2*cp)
// starting at rank * chunk and (2*cp - 1 - rank) * chunk. cp == 1 is the whole sequence (two
// halves in order).
ops::ChunkedPositions ContextChunks(int64_t seq_len, int cp, int rank);

// Copies this cp rank's tokens of [B, seq_len] rows (i32 or f32, host memory) into [B,
// seq_len / cp]: chunk r then chunk 2*cp-1-r of each sequence (what the data loader's batch
// becomes on a context-parallel rank; targets are cut the same way).
absl::Status SelectContextChunks(const int32_t* full, int64_t B, int64_t seq_len, int cp, int rank,
                                 int32_t* local);

// Seconds this rank waited for the ring's transfers since the last Take.
struct RingTimes {
  double kv_wait_seconds = 0;   // waits for K/V blocks (posted before the compute)
  double dkv_wait_seconds = 0;  // waits for the dK/dV accumulators (posted a block earlier)
  double compute_seconds = 0;   // the block kernels
};

class RingAttention {
 public:
  // cp: the context-parallel group (its size is cp; a group of one runs the plain attention
  // kernels over the two local chunks, which is whole-sequence attention).
  explicit RingAttention(Communicator* cp) : cp_(cp) {}

  // qkv: [B, T, (NH + 2*NKV) * HD], this rank's T = seq_len / cp rows; out: [B, T, NH * HD];
  // lse: f32 [B, NH, T], both for the whole sequence's keys. kv_buf: two tensors shaped like
  // qkv (the blocks in flight). segments (packed examples; null = none): i32 [B, seq_len], the
  // WHOLE sequence's segment ids on every rank (ops/attention_block.h): attention then stays
  // inside each segment, whichever ranks its tokens lie on. They do not travel.
  absl::Status Forward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& out,
                       const Tensor& lse, const Tensor kv_buf[2], const Tensor* segments = nullptr);
  // dqkv (overwritten) from dout, with out and lse from Forward. kv_buf: two tensors, dkv_buf:
  // three (two accumulators in flight and this rank's partial), each shaped like qkv. segments
  // as in Forward.
  absl::Status Backward(const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int n_head, int n_kv_head, const Tensor& dqkv, const Tensor kv_buf[2],
                        const Tensor dkv_buf[3], const Tensor* segments = nullptr);

  RingTimes TakeTimes() { return std::exchange(times_, RingTimes{}); }

 private:
  // Posts block `send` to the next rank and `recv` from the previous one.
  absl::StatusOr<std::unique_ptr<CommWork>> Shift(const Tensor& send, const Tensor& recv);

  Communicator* cp_;
  RingTimes times_;
};

}  // namespace loom
