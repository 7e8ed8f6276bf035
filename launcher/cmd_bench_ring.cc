// `loom bench ring`: ring attention's transfer against its compute on the world's ranks as one
// context-parallel ring (benchmarks/ring_bench.h). Run it under mpirun -np CP; rank 0 prints.
#include <iostream>

#include "benchmarks/ring_bench.h"
#include "launcher/command.h"
#include "parallel/world.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Times one ring-attention layer (forward + backward, CPU) over the world as a cp ring: the\n"
    "block compute, the waits for K/V blocks posted before it and for the dK/dV accumulators,\n"
    "and the same transfers alone; prints the share of the K/V traffic hidden behind compute.";

absl::Status RunBenchRing(const std::vector<std::string>& argv) {
  bench::RingBenchOptions o;
  int64_t batch = o.batch, seq_len = o.seq_len;
  FlagSet flags("mpirun -np CP loom bench ring", kDescription);
  flags.Int64("--seq-len", &seq_len, "T", "tokens per sequence (split over the ring)");
  flags.Int64("--batch", &batch, "B", "sequences");
  flags.Int("--heads", &o.heads, "N", "query heads").AtLeast(1);
  flags.Int("--kv-heads", &o.kv_heads, "N", "key/value heads (divides --heads)").AtLeast(1);
  flags.Int("--head-dim", &o.head_dim, "N", "head dimension").AtLeast(1);
  flags.Int("--iters", &o.iters, "N", "timed iterations per round").AtLeast(1);
  flags.Int("--rounds", &o.rounds, "N", "rounds (the best is kept) after one warm-up").AtLeast(1);
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(argv));
  if (!run) return absl::OkStatus();
  if (batch < 1 || seq_len < 2) {
    return absl::InvalidArgumentError("bench ring: --batch must be >= 1 and --seq-len >= 2");
  }
  o.batch = batch;
  o.seq_len = seq_len;
  LOOM_ASSIGN_OR_RETURN(World * world, World::Get());
  o.comm = &world->comm();
  LOOM_ASSIGN_OR_RETURN(bench::RingBenchResult r, bench::RunRingBench(o));
  if (world->rank() == 0) std::cout << bench::FormatRingBench(o, r) << std::flush;
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_ring, "bench ring",
                      "ring attention (context parallelism): transfer hidden behind compute",
                      RunBenchRing);

}  // namespace loom
