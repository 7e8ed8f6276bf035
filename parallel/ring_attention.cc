#include "parallel/ring_attention.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ops/activation.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom {
namespace {

// On the CPU an MPI transfer larger than the eager limit moves only inside MPI calls: while a
// block computes, a helper thread drives the progress engine (where MPI allows calls from
// another thread), so the posted hop completes behind the compute. NCCL and the test device's
// backend progress on their own streams and need none.
class ProgressWhileComputing {
 public:
  ProgressWhileComputing(Communicator& comm, const CommWork* pending, const Tensor& t) {
    if (pending == nullptr || !t.on_host() || !comm.CpuProgressFromAnyThread()) return;
    thread_ = std::thread([this, &comm] {
      while (!stop_.load(std::memory_order_relaxed)) {
        (void)comm.ProgressCpu();  // errors surface in the owner's Wait
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  ~ProgressWhileComputing() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

ops::ChunkedPositions ContextChunks(int64_t seq_len, int cp, int rank) {
  const int64_t chunk = seq_len / (2 * cp);
  return ops::ChunkedPositions{chunk, rank * chunk, (2 * int64_t{cp} - 1 - rank) * chunk};
}

absl::Status SelectContextChunks(const int32_t* full, int64_t B, int64_t seq_len, int cp, int rank,
                                 int32_t* local) {
  if (cp < 1 || rank < 0 || rank >= cp || seq_len % (2 * cp) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("context chunks: cp rank ", rank, " of ", cp,
                                                   " cannot cut sequences of ", seq_len,
                                                   " tokens into ", 2 * cp, " equal chunks"));
  }
  const ops::ChunkedPositions p = ContextChunks(seq_len, cp, rank);
  const int64_t local_len = 2 * p.chunk;
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* row = full + b * seq_len;
    int32_t* out = local + b * local_len;
    std::copy(row + p.start0, row + p.start0 + p.chunk, out);
    std::copy(row + p.start1, row + p.start1 + p.chunk, out + p.chunk);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CommWork>> RingAttention::Shift(const Tensor& send,
                                                               const Tensor& recv) {
  const int n = cp_->size(), r = cp_->rank();
  const P2POp ops[2] = {{P2POp::kSend, send, (r + 1) % n}, {P2POp::kRecv, recv, (r - 1 + n) % n}};
  return cp_->BatchSendRecvAsync(ops);
}

absl::Status RingAttention::Forward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& out,
                                    const Tensor& lse, const Tensor kv_buf[2],
                                    const Tensor* segments) {
  const int n = cp_->size(), r = cp_->rank();
  const int64_t seq_len = qkv.dim(1) * n;
  const ops::ChunkedPositions mine = ContextChunks(seq_len, n, r);
  Tensor cur = qkv;
  for (int s = 0; s < n; ++s) {
    // The block from rank r - s: post its successor's hop first, then compute on it.
    std::unique_ptr<CommWork> hop;
    const Tensor& next = kv_buf[s % 2];
    if (s + 1 < n) {
      LOOM_ASSIGN_OR_RETURN(hop, Shift(cur, next));
    }
    const int origin = (r - s + n) % n;
    Timer compute;
    {
      ProgressWhileComputing progress(*cp_, hop.get(), qkv);
      LOOM_RETURN_IF_ERROR(ops::AttentionBlockForward(qkv, cur, n_head, n_kv_head, mine,
                                                      ContextChunks(seq_len, n, origin), s == 0,
                                                      out, lse, segments));
    }
    times_.compute_seconds += compute.Seconds();
    if (hop) {
      Timer wait;
      LOOM_RETURN_IF_ERROR(hop->Wait());
      times_.kv_wait_seconds += wait.Seconds();
      cur = next;
    }
  }
  return absl::OkStatus();
}

absl::Status RingAttention::Backward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                                     const Tensor& lse, int n_head, int n_kv_head,
                                     const Tensor& dqkv, const Tensor kv_buf[2],
                                     const Tensor dkv_buf[3], const Tensor* segments) {
  const int n = cp_->size(), r = cp_->rank();
  const int64_t seq_len = qkv.dim(1) * n;
  const ops::ChunkedPositions mine = ContextChunks(seq_len, n, r);
  // dqkv collects dQ in its Q columns; the accumulator that travels with each block collects
  // dK and dV in its K and V columns; the two are summed at the end (disjoint columns).
  LOOM_RETURN_IF_ERROR(dqkv.Fill0());
  Tensor cur = qkv;
  std::unique_ptr<CommWork> dhop;  // the accumulator of this step's block, still arriving
  for (int s = 0; s < n; ++s) {
    std::unique_ptr<CommWork> hop;
    const Tensor& next = kv_buf[s % 2];
    if (s + 1 < n) {
      LOOM_ASSIGN_OR_RETURN(hop, Shift(cur, next));
    }
    const int origin = (r - s + n) % n;
    // This rank's share of the block's dK/dV goes into a fresh partial while the block's
    // accumulator is still on its way from the previous rank (at step 0 the block is this
    // rank's own and has no accumulator yet: straight into it).
    const Tensor& acc = dkv_buf[s % 2];
    const Tensor& part = s == 0 ? acc : dkv_buf[2];
    LOOM_RETURN_IF_ERROR(part.Fill0());
    Timer compute;
    {
      ProgressWhileComputing progress(*cp_, hop ? hop.get() : dhop.get(), qkv);
      LOOM_RETURN_IF_ERROR(ops::AttentionBlockBackward(dout, qkv, cur, out, lse, n_head, n_kv_head,
                                                       mine, ContextChunks(seq_len, n, origin),
                                                       dqkv, part, segments));
    }
    times_.compute_seconds += compute.Seconds();
    Timer wait;
    if (hop) {
      LOOM_RETURN_IF_ERROR(hop->Wait());
      cur = next;
    }
    times_.kv_wait_seconds += wait.Seconds();
    Timer dwait;
    if (dhop) {
      LOOM_RETURN_IF_ERROR(dhop->Wait());
      LOOM_RETURN_IF_ERROR(ops::Add(acc, part, acc));
    }
    times_.dkv_wait_seconds += dwait.Seconds();
    // The accumulator moves on after every block (its hop overlaps the next block's compute),
    // so after n hops each is home again.
    LOOM_ASSIGN_OR_RETURN(dhop, Shift(acc, dkv_buf[(s + 1) % 2]));
  }
  Timer dwait;
  LOOM_RETURN_IF_ERROR(dhop->Wait());
  times_.dkv_wait_seconds += dwait.Seconds();
  return ops::Add(dqkv, dkv_buf[n % 2], dqkv);
}

}  // namespace loom
