// The layout planner behind `loom plan`: for a job and a machine loom has never run on (GPU
// count and kind, memory, peak and achievable speed, intra- and inter-node bandwidth, GPUs per
// node) it enumerates every valid layout (dp, tp, cp, pp with even or uneven stages, virtual
// stages, schedule, micro-batch size, recomputation, distributed optimizer), predicts its
// memory per GPU and its step time, and ranks them. docs/planner.md explains the model and
// checks it against published runs.
//
// Nothing here is a second copy of a rule: a layout is valid when LayoutProblems (the check
// `loom train` applies, less the data fields: planning needs no data) finds nothing in the job
// with that layout; its memory is EstimateMemoryPerRank (job/memory_estimate.h); its flops are
// TrainingFlopsPerToken (model/gpt_config.h); its bubble is the pipeline simulator's.
//
// The step-time model (plan/plan_time.cc; seconds per optimizer step), what loom executes:
//   compute  = micro-batches x the slowest stage's flops per micro-batch / (tp * cp * peak *
//              efficiency): layers on that stage (x 4/3 with full recomputation), the head on the
//              last; efficiency is an explicit assumption (a GPU preset's default or a
//              calibration file);
//   tp comm  = on the critical path: per layer and micro-batch 4 all-reduces of B*T/cp*C
//              activations (6 with full recomputation; sequence parallelism moves the same bytes);
//   cp comm  = the ring (parallel/ring_attention.h): per layer, this rank's qkv block (whole
//              qkv rows, (NH + 2*NKV) / (2*NKV) times the bytes of K and V) makes cp - 1 hops
//              forward, each beside one block's attention (1/cp of the layer's); backward sends
//              the blocks again and a dK/dV accumulator cp hops behind them, beside twice that
//              compute, the last hop home exposed; only what the blocks do not cover counts;
// Ranks are numbered as RankGrid does (tp innermost, then cp, dp, pp), so tp stays inside a
// node (tp <= gpus per node); a cp, dp or pp group uses the inter-node link when its span of
// consecutive ranks (tp*cp, tp*cp*dp, the world) crosses a node boundary.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "job/memory_estimate.h"
#include "plan/gpu_presets.h"
#include "proto/job.pb.h"

namespace loom {

struct PlanMachine {
  int gpus = 1;
  std::string gpu = "h100-sxm";  // the preset the figures came from (printed)
  double memory_gib = 79.6;      // usable per GPU
  double peak_tflops = 989.4;    // dense bf16 (or the CPU's sgemm) peak: MFU's denominator
  double efficiency = 0.46;      // fraction of the peak the compute achieves (an assumption)
  std::string efficiency_source = "h100-sxm default";
  double intra_node_gbps = 3600;  // Gbit/s per GPU within a node (NVLink 4: 3600)
  double inter_node_gbps = 400;   // Gbit/s per GPU between nodes (400G InfiniBand: 400)
  int gpus_per_node = 8;
  double achievable_tflops() const { return peak_tflops * efficiency; }
};

// The machine of `gpus` GPUs of a preset.
PlanMachine MachineFromPreset(const GpuPreset& preset, int gpus);

// What the search enumerates beyond dp, tp, pp, micro-batch, recomputation and ZeRO.
struct PlanSearch {
  int max_cp = 16;             // context-parallel degrees up to this (2*cp must divide seq_len)
  bool zero_bubble = true;     // ZERO_BUBBLE beside 1F1B for pp > 1 with one virtual stage
  bool uneven_stages = true;   // pp * v that do not divide the layers (PlannerStageLayers)
  int max_virtual_stages = 4;  // interleaving depth tried with uneven stages
  int max_micro_batch = 16;    // sequences per micro-batch tried (divisors of the batch up to it)
};

enum class PlanSchedule { kOneFOneB, kInterleaved, kZeroBubble };
const char* PlanScheduleName(PlanSchedule s);  // "1f1b", "interleaved", "zb"

struct PlanTimes {
  double compute = 0, tp_comm = 0, cp_comm = 0, dp_comm = 0, pp_comm = 0, bubble = 0;
  double dp_hidden = 0;  // reduction time hidden behind backward (informational, not in total)
  double total() const { return compute + tp_comm + cp_comm + dp_comm + pp_comm + bubble; }
};

struct PlannedLayout {
  LayoutDegrees degrees;  // dp, tp, pp, virtual stages, recomputation
  int cp = 1;             // context-parallel ranks (parallel.cp)
  PlanSchedule schedule = PlanSchedule::kOneFOneB;
  std::vector<int> chunk_layers;  // layers of each model chunk, model order (pp * v entries)
  bool uneven = false;            // chunk_layers is not the even split (written as stage_layers)
  int micro_batch = 1;
  int64_t micro_batches = 1;  // per step on each data-parallel rank (accumulation)
  bool distributed_optimizer = false;
  bool sequence_parallel = false;
  MemoryEstimate memory;  // per GPU: EstimateMemoryPerRank of the layout's job
  int64_t reserve = 0;    // bytes the machine keeps back (CUDA context, workspaces)
  bool fits = false;      // memory.total + reserve <= the GPU's memory
  PlanTimes time;
  double tokens_per_s = 0;
  double mfu = 0;            // model flops (no recomputation) over the machine's PEAK
  std::string Name() const;  // "dp4 tp2 pp1 v1 mb2 none zero1" (+ " cp2", " zb")
  int world() const { return degrees.dp * degrees.tp * degrees.pp * cp; }
};

// `config` with this layout's parallel fields (tp, cp, pp, dp, virtual stages, stage_layers when
// uneven, schedule, micro-batch size, sequence parallelism, distributed optimizer, recompute):
// the job to run on world() ranks.
JobConfig WithLayout(const JobConfig& config, const PlannedLayout& layout);

// Every valid layout of `config` (defaults applied) on `machine`, those that fit first, by
// predicted step time (ties: fewer kinds of parallelism, then memory); then those that do not
// fit, by memory. An error names a bad machine figure, or says that no layout is valid (with the
// problems of the plain dp-only layout).
absl::StatusOr<std::vector<PlannedLayout>> PlanLayouts(const JobConfig& config,
                                                       const PlanMachine& machine,
                                                       const PlanSearch& search = PlanSearch());

// The ranked table, at most `rows` rows, with a header line.
std::string FormatPlanTable(const std::vector<PlannedLayout>& layouts, int rows);
// Every layout as CSV with a header: exact bytes (memory_bytes excludes the reserve) and seconds.
// The first 20 columns keep their order (tools/plan_vs_measured.sh reads them by position).
std::string FormatPlanCsv(const std::vector<PlannedLayout>& layouts);

// The job file of one layout (`loom plan --job-out`): WithLayout(config, l) in text format,
// after comment lines naming the layout, the machine and the world size (dp*tp*cp*pp ranks) to
// run it on. It parses back (LoadJobConfig) to the same parallel fields, cp and schedule too.
std::string FormatPlannedJob(const JobConfig& config, const PlannedLayout& l, const PlanMachine& m);

// Per-step times of one layout (plan_time.cc). `job` is WithLayout(config, l) (data.seq_len the
// whole sequence); `l` carries the memory already estimated.
PlanTimes PredictTimes(const JobConfig& job, const PlanMachine& m, const PlannedLayout& l,
                       double bubble_overhead);

}  // namespace loom
