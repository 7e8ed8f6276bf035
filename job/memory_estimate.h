// The memory one rank of a training job needs, by kind, for its layout: used by `loom config
// check` and `loom train` to refuse a job that cannot fit before anything is allocated, and by
// the layout planner to rank layouts. Nothing here restates the model:
// - parameters: the parameter table the model builds for the stage (model/gpt_params.h), padded
//   vocab rows and the last stage's copy of a tied embedding included;
// - bytes per parameter: the compute dtype's weights, fp32 gradients, and the optimizer's own
//   state (parallel/adamw.h: fp32 m and v, an fp32 master copy under bf16), split over dp x cp
//   with parallel.distributed_optimizer;
// - activations: the model's own allocation code run without allocating
//   (GptModel::MeasureActivations): the buffers held once, plus one slot per micro-batch chunk
//   in flight, the count the pipeline simulator finds for the job's schedule
//   (parallel/pipeline_simulator.h), recomputation included; under ZERO_BUBBLE a slot is held
//   until its W pass (every stage holds min(p, m), 1F1B's first stage's count) and, with
//   recomputation, also holds the rebuilt tensors its W pass reads (without recomputation a
//   ZERO_BUBBLE slot is exactly a 1F1B slot: W reads only what the slot already holds). With
//   context parallelism a rank holds seq_len / cp tokens of each sequence (about 1/cp of the
//   activations) plus ring attention's blocks in flight.
// The figure is that of the pipeline stage needing the most.
// Not counted: allocator rounding (512 bytes a tensor), communication buffers, the CUDA context
// and library workspaces, the process's own code and heap (callers keep a reserve for those,
// see job/job_check.h), and the token shards (memory-mapped files the kernel can page out).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "job/job_layout.h"
#include "model/gpt.h"
#include "proto/job.pb.h"

namespace loom {

// Activation recomputation is the model's own choice (Recompute, model/gpt.h), priced here as the
// model allocates it: kSelective keeps every layer's activations but the MLP activation, held
// once and rebuilt in backward; kFull keeps only each layer's input per micro-batch in flight
// and holds one layer's activations once, rebuilt before that layer's backward.

struct LayoutDegrees {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  int virtual_stages = 1;
  Recompute recompute = Recompute::kNone;
};

struct MemoryEstimate {
  int64_t parameters = 0;         // parameters held by the rank (padded vocab rows included)
  int64_t weights = 0;            // bytes of the compute-dtype weights
  int64_t gradients = 0;          // bytes
  int64_t master_weights = 0;     // fp32 copy for BF16 (0 for FP32, where weights are the master)
  int64_t optimizer_moments = 0;  // AdamW m and v
  int64_t activations = 0;        // at parallel.micro_batch_size, micro-batches in flight included
  int64_t total = 0;
  int stage = 0;  // the pipeline stage the figures are for (the largest)
  int64_t micro_batches_in_flight = 1;
  // ZERO_BUBBLE: the part of `activations` beyond the plain slots, the tensors recomputation
  // rebuilt that the deferred weight-gradient passes read, kept until they run; 0 without
  // recomputation and for the other schedules.
  int64_t weight_grad_buffers = 0;
};

// The estimate for each pipeline stage (index = stage; one entry without pipeline stages), as a
// rank of that stage allocates it.
absl::StatusOr<std::vector<MemoryEstimate>> EstimateMemoryPerStage(const JobLayout& layout);
// The estimate for the rank that needs the most. `config` has its defaults applied and is valid
// for the layout (job/config.h ValidateJobConfig); sizes beyond int64 saturate.
absl::StatusOr<MemoryEstimate> EstimateMemoryPerRank(const JobLayout& layout);
// The same for `config` laid out as `degrees` (a world of dp * tp * pp ranks); an error when the
// config is not valid for that layout.
absl::StatusOr<MemoryEstimate> EstimateMemoryPerRank(const JobConfig& config,
                                                     const LayoutDegrees& degrees);

// "weights 12 MiB + gradients 12 MiB + ... = 49 MiB", each line starting with `prefix`.
std::string FormatMemoryEstimate(const MemoryEstimate& m, const std::string& prefix);

}  // namespace loom
