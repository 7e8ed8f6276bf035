// `loom bench ops`: times every op family's forward and backward at GPT-2 124M shapes on one
// device and rates each against that device's roofline (ops/roofline.h).
//
// Each row has a bound: GEMM-bound ops and attention are rated by FLOP/s against the compute
// ceiling, everything else by the bytes it must move (inputs read once, outputs written once:
// the least any implementation could touch) against the memory ceiling. Targets:
//   GEMM:      CPU >= 80% of measured sgemm        GPU >= 70% of bf16 peak
//   memory:    CPU >= 50% of memcpy bandwidth      GPU >= 70% of HBM bandwidth
//              (i.e. within 2x the memcpy time for the same bytes)
//   attention: CPU, T >= 1024: within 1.5x of the time its causal GEMM FLOPs take at sgemm rate
//              GPU forward >= 50% of bf16 peak; other attention rows have no target.
// Timing: one warm-up call, then `iters` timed calls (auto: enough for ~0.2 s, 1..50). When
// the warm-up alone takes over 1 s (inputs are pre-touched, so it is not a cold run) it is the
// measurement. A CPU row reports the median call (robust to a process sharing the cores); a
// CUDA row the mean over the timed calls, from events on the op stream.
// Dtypes: CPU fp32 throughout; CUDA bf16 activations and weights, fp32 statistics, parameter
// gradients, losses and optimizer state (the production mix).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ops/roofline.h"
#include "runtime/device.h"

namespace loom::bench {

// One model/batch geometry to benchmark at.
struct BenchShape {
  std::string name;  // "tiny", "small", "gpt2"
  int64_t batch = 0, seq = 0, channels = 0, heads = 0, kv_heads = 0, vocab = 0;
  int64_t optimizer_params = 0;  // elements the AdamW / sum-of-squares rows update
};

// "tiny" (smoke test), "small" (B=4, T=64), "gpt2" (B=8, T=1024), "all" (small + gpt2); all
// but tiny are GPT-2 124M (C=768, 12 heads, V=50257).
absl::StatusOr<std::vector<BenchShape>> ShapesNamed(const std::string& which);

enum class Bound { kGemm, kMemory, kAttention };

struct OpTiming {
  std::string op;     // "linear qkv fwd"
  std::string shape;  // what the op ran on, e.g. "8192x768 -> 2304"
  std::string set;    // the BenchShape name
  int64_t seq = 0;    // T of that shape
  Bound bound = Bound::kMemory;
  double flops = 0;     // useful FLOPs per call
  double bytes = 0;     // least bytes read + written per call
  double ms = 0;        // per call
  int iters = 0;        // timed calls
  double fraction = 0;  // of the roofline that bounds it
  double target = 0;    // required fraction; 0 = no target
  bool pass = false;
};

struct BenchOptions {
  Device* device = nullptr;
  std::string shapes = "all";
  int iters = 0;  // timed calls per op; 0 = auto
  // Only the op families whose name holds one of these words (embedding, layernorm, linear,
  // qkv, attn_proj, fc+gelu, mlp_proj, lm_head, rope, attention, activation, add, gelu, swiglu,
  // rmsnorm, cross_entropy, optimizer, adamw, sum_of_squares); empty = all.
  std::vector<std::string> ops;
};

// Runs every op at every shape of `options.shapes`, calling `on_row` as each row finishes.
absl::StatusOr<std::vector<OpTiming>> RunOpBenchmarks(
    const BenchOptions& options, const Roofline& roofline,
    const std::function<void(const OpTiming&)>& on_row);

// The table's header line and one formatted row, and the closing summary.
std::string TableHeader();
std::string FormatRow(const OpTiming& row);
std::string Summary(const std::vector<OpTiming>& rows);

}  // namespace loom::bench
