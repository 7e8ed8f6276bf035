#include "benchmarks/ring_bench.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "parallel/ring_attention.h"
#include "runtime/device.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom::bench {
namespace {

// The slowest rank's value.
absl::StatusOr<double> Slowest(Communicator& comm, double v) {
  double x[1] = {v};
  LOOM_RETURN_IF_ERROR(comm.AllReduceHost(absl::MakeSpan(x, 1), ReduceOp::kMax));
  return x[0];
}

// The least-waiting rank's value: a wait also holds the time a peer was late (its compute
// drifted), which the last rank to arrive does not see; its wait is the transfer left exposed.
absl::StatusOr<double> Least(Communicator& comm, double v) {
  LOOM_ASSIGN_OR_RETURN(double negated, Slowest(comm, -v));
  return -negated;
}

}  // namespace

absl::StatusOr<RingBenchResult> RunRingBench(const RingBenchOptions& o) {
  Communicator& comm = *o.comm;
  const int cp = comm.size();
  if (o.seq_len % (2 * cp) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bench ring: --seq-len %d is not divisible by 2 * cp = %d", o.seq_len, 2 * cp));
  }
  const int64_t T = o.seq_len / cp;
  const int64_t width = static_cast<int64_t>(o.heads + 2 * o.kv_heads) * o.head_dim;
  Device* dev = CpuDevice();
  auto make = [&](const Shape& s) { return Tensor::Zeros(s, DType::kF32, dev); };
  LOOM_ASSIGN_OR_RETURN(Tensor qkv, make(Shape{o.batch, T, width}));
  LOOM_ASSIGN_OR_RETURN(Tensor out, make(Shape{o.batch, T, int64_t{o.heads} * o.head_dim}));
  LOOM_ASSIGN_OR_RETURN(Tensor dout, make(Shape{o.batch, T, int64_t{o.heads} * o.head_dim}));
  LOOM_ASSIGN_OR_RETURN(Tensor lse, make(Shape{o.batch, o.heads, T}));
  LOOM_ASSIGN_OR_RETURN(Tensor dqkv, make(Shape{o.batch, T, width}));
  Tensor kv[2], dkv[3];
  for (Tensor& t : kv) {
    LOOM_ASSIGN_OR_RETURN(t, make(Shape{o.batch, T, width}));
  }
  for (Tensor& t : dkv) {
    LOOM_ASSIGN_OR_RETURN(t, make(Shape{o.batch, T, width}));
  }
  {
    // Values of a plausible scale (the timing does not depend on them).
    std::vector<float> v(qkv.numel());
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = static_cast<float>((i * 2654435761u) % 1000) / 1e3f - 0.5f;
    LOOM_RETURN_IF_ERROR(qkv.CopyFromFloats(v));
    v.resize(dout.numel());
    LOOM_RETURN_IF_ERROR(dout.CopyFromFloats(v));
  }
  RingAttention ring(&comm);
  RingBenchResult best;
  best.block_bytes = static_cast<int64_t>(qkv.nbytes());
  best.step_seconds = std::numeric_limits<double>::infinity();
  for (int round = 0; round < o.rounds + 1; ++round) {  // round 0 warms up
    LOOM_RETURN_IF_ERROR(comm.Barrier());
    ring.TakeTimes();
    Timer step;
    for (int i = 0; i < o.iters; ++i) {
      LOOM_RETURN_IF_ERROR(ring.Forward(qkv, o.heads, o.kv_heads, out, lse, kv));
      LOOM_RETURN_IF_ERROR(ring.Backward(dout, qkv, out, lse, o.heads, o.kv_heads, dqkv, kv, dkv));
    }
    const RingTimes times = ring.TakeTimes();
    LOOM_ASSIGN_OR_RETURN(double s, Slowest(comm, step.Seconds() / o.iters));
    if (round == 0 || s >= best.step_seconds) continue;
    best.step_seconds = s;
    LOOM_ASSIGN_OR_RETURN(best.compute_seconds, Slowest(comm, times.compute_seconds / o.iters));
    LOOM_ASSIGN_OR_RETURN(best.kv_wait_seconds, Least(comm, times.kv_wait_seconds / o.iters));
    LOOM_ASSIGN_OR_RETURN(best.dkv_wait_seconds, Least(comm, times.dkv_wait_seconds / o.iters));
    LOOM_ASSIGN_OR_RETURN(best.kv_wait_slowest, Slowest(comm, times.kv_wait_seconds / o.iters));
    LOOM_ASSIGN_OR_RETURN(best.dkv_wait_slowest, Slowest(comm, times.dkv_wait_seconds / o.iters));
  }
  // The same hops with nothing between post and wait: (cp - 1) K/V hops in forward and again in
  // backward, cp dK/dV hops in backward.
  const int n = cp, r = comm.rank();
  auto hop = [&](const Tensor& send, const Tensor& recv) -> absl::Status {
    const P2POp ops[2] = {{P2POp::kSend, send, (r + 1) % n}, {P2POp::kRecv, recv, (r - 1 + n) % n}};
    return comm.BatchSendRecv(ops);
  };
  double kv_best = std::numeric_limits<double>::infinity(), dkv_best = kv_best;
  for (int round = 0; round < o.rounds + 1; ++round) {
    LOOM_RETURN_IF_ERROR(comm.Barrier());
    Timer kv_timer;
    for (int i = 0; i < o.iters; ++i) {
      for (int s = 0; s + 1 < n; ++s) LOOM_RETURN_IF_ERROR(hop(qkv, kv[s % 2]));
      for (int s = 0; s + 1 < n; ++s) LOOM_RETURN_IF_ERROR(hop(qkv, kv[s % 2]));
    }
    LOOM_ASSIGN_OR_RETURN(double kv_s, Slowest(comm, kv_timer.Seconds() / o.iters));
    Timer dkv_timer;
    for (int i = 0; i < o.iters; ++i) {
      for (int s = 0; s < n && n > 1; ++s) LOOM_RETURN_IF_ERROR(hop(dkv[s % 2], dkv[(s + 1) % 2]));
    }
    LOOM_ASSIGN_OR_RETURN(double dkv_s, Slowest(comm, dkv_timer.Seconds() / o.iters));
    if (round == 0) continue;
    kv_best = std::min(kv_best, kv_s);
    dkv_best = std::min(dkv_best, dkv_s);
  }
  best.kv_transfer_seconds = kv_best;
  best.dkv_transfer_seconds = dkv_best;
  return best;
}

std::string FormatRingBench(const RingBenchOptions& o, const RingBenchResult& r) {
  const int cp = o.comm->size();
  std::string out = absl::StrFormat(
      "ring attention: cp %d, B %d x seq_len %d (%d tokens per rank), %d heads (%d kv) x %d; "
      "one K/V block %.2f MiB\n",
      cp, o.batch, o.seq_len, o.seq_len / cp, o.heads, o.kv_heads, o.head_dim,
      r.block_bytes / 1048576.0);
  absl::StrAppendFormat(&out, "  forward + backward      %9.2f ms\n", r.step_seconds * 1e3);
  absl::StrAppendFormat(&out, "  block compute           %9.2f ms\n", r.compute_seconds * 1e3);
  absl::StrAppendFormat(&out, "  K/V transfer alone      %9.2f ms (%d hops)\n",
                        r.kv_transfer_seconds * 1e3, 2 * (cp - 1));
  absl::StrAppendFormat(&out,
                        "  K/V wait in the ring    %9.2f ms (most-waiting rank %.2f ms) -> %.0f%% "
                        "of the K/V traffic hidden\n",
                        r.kv_wait_seconds * 1e3, r.kv_wait_slowest * 1e3,
                        100.0 * std::max(0.0, r.hidden()));
  absl::StrAppendFormat(&out, "  dK/dV transfer alone    %9.2f ms (%d hops)\n",
                        r.dkv_transfer_seconds * 1e3, cp > 1 ? cp : 0);
  const double dkv_hidden =
      r.dkv_transfer_seconds > 0 ? 1.0 - r.dkv_wait_seconds / r.dkv_transfer_seconds : 0.0;
  absl::StrAppendFormat(&out,
                        "  dK/dV wait in the ring  %9.2f ms (most-waiting rank %.2f ms) -> %.0f%% "
                        "hidden\n",
                        r.dkv_wait_seconds * 1e3, r.dkv_wait_slowest * 1e3,
                        100.0 * std::max(0.0, dkv_hidden));
  return out;
}

}  // namespace loom::bench
