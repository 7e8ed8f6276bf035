// `loom bench ring`: how much of ring attention's traffic (parallel/ring_attention.h) is hidden
// behind its block compute, on the ranks of a communicator (the cp group: run under
// mpirun -np CP). For one attention layer of B x seq_len tokens split over the ring, it times
// (best of rounds, slowest rank):
//   step      forward + backward of ring attention;
//   compute   the block kernels alone (RingTimes::compute_seconds);
//   kv wait   time spent waiting for K/V blocks that were posted before the compute;
//   dkv wait  time spent waiting for the dK/dV accumulators (posted a block earlier);
//             both for the least-waiting rank (a rank's wait also holds the time its peer was
//             late; the last rank to arrive waits only for the transfer left exposed) and the
//             most-waiting one;
//   transfer  the same hops with no compute between post and wait (what the K/V traffic costs
//             when nothing hides it);
// and hidden = 1 - kv wait / K/V transfer: the share of the K/V traffic run behind compute
// (the same for dK/dV).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace loom::bench {

struct RingBenchOptions {
  Communicator* comm = nullptr;  // the ring (size = cp)
  int64_t batch = 1, seq_len = 4096;
  int heads = 8, kv_heads = 8, head_dim = 64;
  int iters = 3, rounds = 2;
};

struct RingBenchResult {
  int64_t block_bytes = 0;     // one K/V block as it travels (whole qkv rows)
  double step_seconds = 0;     // forward + backward, per iteration
  double compute_seconds = 0;  // block kernels
  // Waits of the least-waiting rank (the last to arrive: the transfer left exposed) and of the
  // most-waiting one (which also waited for late peers).
  double kv_wait_seconds = 0, dkv_wait_seconds = 0;
  double kv_wait_slowest = 0, dkv_wait_slowest = 0;
  double kv_transfer_seconds = 0;   // the K/V hops of one forward + backward, nothing overlapped
  double dkv_transfer_seconds = 0;  // the dK/dV hops of one backward
  double hidden() const {
    return kv_transfer_seconds > 0 ? 1.0 - kv_wait_seconds / kv_transfer_seconds : 0.0;
  }
};

absl::StatusOr<RingBenchResult> RunRingBench(const RingBenchOptions& options);
std::string FormatRingBench(const RingBenchOptions& options, const RingBenchResult& r);

}  // namespace loom::bench
