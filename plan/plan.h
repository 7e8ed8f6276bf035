// The layout planner behind `loom plan`: for a job and a machine loom has never run on (GPU
// count, memory and speed, intra- and inter-node bandwidth, GPUs per node) it enumerates every
// valid layout (dp, tp, pp, virtual stages, micro-batch size, recomputation, distributed
// optimizer), predicts its memory per GPU and its step time, and ranks them.
//
// Nothing here is a second copy of a rule: a layout is valid when ConfigProblems (the check
// `loom train` applies) finds nothing in the job with that layout; its memory is
// EstimateMemoryPerRank (job/memory_estimate.h: weights, gradients, optimizer state as the
// distributed optimizer shards it, activations of the micro-batches in flight with the chosen
// recomputation); its flops are TrainingFlopsPerToken (model/gpt_config.h).
//
// The step-time model (every term in seconds per optimizer step, nothing overlapped, so it is
// an upper bound on a machine that overlaps):
//   compute  = tokens/step * flops/token / (gpus * tflops), times 4/3 with full recomputation
//              (one more forward) and plus the attention-score forward with selective;
//   tp comm  = per layer of a stage and micro-batch, 4 all-reduces of B*T*C activations (6 with
//              full recomputation; sequence parallelism moves the same bytes as reduce-scatters
//              and all-gathers), ring cost 2(tp-1)/tp * bytes / intra-node bandwidth;
//   dp comm  = the gradient all-reduce of the rank's parameters in fp32, 2(dp-1)/dp * bytes;
//              with the distributed optimizer a reduce-scatter of fp32 gradients and an
//              all-gather of the weights; over the inter-node link when the dp group spans nodes;
//   pp comm  = per micro-batch and model chunk, the stage output sent forward and its gradient
//              back (point to point), inter-node when the pipeline spans nodes;
//   bubble   = compute * (pp-1) / (virtual stages * micro-batches), Megatron's
//              (p-1)/(m+p-1) of the schedule, reduced v-fold by interleaving.
// Ranks are numbered as RankGrid does (tp innermost, then dp, then pp), so tp stays inside a
// node (tp <= gpus per node) and the dp and pp groups span nodes when tp*dp (tp*dp*pp) exceeds
// the GPUs of one node.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "job/memory_estimate.h"
#include "proto/job.pb.h"

namespace loom {

struct PlanMachine {
  int gpus = 1;
  double memory_gib = 80;         // per GPU
  double tflops = 400;            // achievable dense bf16 (or the CPU's sgemm) TFLOP/s per GPU
  double intra_node_gbps = 3600;  // Gbit/s per GPU within a node (NVLink 4: ~3600)
  double inter_node_gbps = 400;   // Gbit/s per GPU between nodes (400G InfiniBand: 400)
  int gpus_per_node = 8;
};

struct PlanTimes {
  double compute = 0, tp_comm = 0, dp_comm = 0, pp_comm = 0, bubble = 0;
  double total() const { return compute + tp_comm + dp_comm + pp_comm + bubble; }
};

struct PlannedLayout {
  LayoutDegrees degrees;  // dp, tp, pp, virtual stages, recomputation
  int micro_batch = 1;
  int64_t micro_batches = 1;  // per step on each data-parallel rank (accumulation)
  bool distributed_optimizer = false;
  bool sequence_parallel = false;
  MemoryEstimate memory;
  int64_t reserve = 0;  // bytes the machine keeps back (CUDA context, workspaces)
  bool fits = false;    // memory.total + reserve <= the GPU's memory
  PlanTimes time;
  double tokens_per_s = 0;
  double mfu = 0;            // model flops (no recomputation) over the machine's peak
  std::string Name() const;  // "dp4 tp2 pp1 v1 mb2 none zero1"
};

// `config` with this layout's parallel fields (tp, pp, dp, virtual stages and schedule,
// micro-batch size, sequence parallelism, distributed optimizer).
JobConfig WithLayout(const JobConfig& config, const PlannedLayout& layout);

// Every valid layout of `config` (defaults applied) on `machine`, those that fit first, by
// predicted step time; then those that do not fit, by memory. An error names a bad machine
// figure, or says that no layout is valid (with the problems of the plain dp-only layout).
absl::StatusOr<std::vector<PlannedLayout>> PlanLayouts(const JobConfig& config,
                                                       const PlanMachine& machine);

// The ranked table, at most `rows` rows, with a header line.
std::string FormatPlanTable(const std::vector<PlannedLayout>& layouts, int rows);
// Every layout as CSV with a header: exact bytes (memory_bytes excludes the reserve) and seconds.
std::string FormatPlanCsv(const std::vector<PlannedLayout>& layouts);

}  // namespace loom
