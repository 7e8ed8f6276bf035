// The job as one typed value, validated and derived once: JobLayout::Create(config, world)
// applies the defaults, runs every config check (config_problems.h) and computes what follows
// from a valid config: the rank grid's degrees, the layers of each pipeline chunk, the padded
// vocab, the batch arithmetic, the model shape, and the config's enums converted (pipeline
// schedule, recomputation, precision). The trainer, `loom config check`, `loom plan`, the
// `bench` commands and the memory estimate read these fields; none re-reads the raw config for
// what the layout holds.
//
// Promises: a layout exists only for a config without problems; the model can be split as the
// layout says (nothing is rounded or dropped silently).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt.h"
#include "model/gpt_config.h"
#include "parallel/pipeline_schedule.h"
#include "proto/job.pb.h"

namespace loom {

// The model shape a job describes (defaults applied, vocab padded).
GptConfig GptConfigFromJob(const JobConfig& job);

// Exact trainable parameter count of the model (unpadded vocab), from the model's own parameter
// descriptions (model/gpt_params.h GptParameterCount), so the formula lives in one place.
int64_t ParameterCount(const ModelConfig& model);

// The config's enums as the layers below name them: one conversion each.
Recompute RecomputeFromConfig(ParallelConfig::Recompute recompute);
PipelineScheduleKind PipelineScheduleFromConfig(ParallelConfig::Schedule schedule);

struct JobLayout {
  JobConfig config;  // the job, defaults applied
  GptConfig model;   // its model shape (padded vocab)

  int world_size = 0;
  int dp = 0;  // parallel.dp, or world_size / (tp * cp * pp) when it was 0
  int tp = 0;
  int pp = 0;
  int virtual_stages = 0;
  PipelineScheduleKind schedule = PipelineScheduleKind::kOneFOneB;
  Recompute recompute = Recompute::kNone;
  bool bf16 = false;               // precision BF16 (else FP32)
  bool sequence_parallel = false;  // parallel.sequence_parallel with tp > 1
  bool distributed_optimizer = false;

  int64_t micro_batch_size = 0;    // sequences per micro-batch
  int64_t seq_len = 0;             // tokens per sequence (whole, before the cp split)
  int64_t grad_accum_steps = 0;    // micro-batches per rank per step: global / (micro * dp)
  int64_t sequences_per_step = 0;  // parallel.global_batch_size
  int64_t tokens_per_step = 0;     // global_batch_size * data.seq_len
  int64_t padded_vocab = 0;        // PaddedVocab(config)
  int64_t vocab_per_tp_rank = 0;   // padded_vocab / tp
  int64_t head_dim = 0;            // hidden / heads
  int64_t parameters = 0;          // ParameterCount(config.model)
  int64_t padded_parameters = 0;   // as allocated: the embedding (and untied head) padded
  int64_t steps_this_run = 0;      // runtime.stop_at_step if set, else lr_schedule.total_steps
  // Layers of each model chunk in model order (pp * virtual_stages entries; entry k is virtual
  // stage k / pp of pipeline stage k % pp) and the global index of each chunk's first layer.
  std::vector<int> chunk_layers;
  std::vector<int> chunk_first_layer;
  int cp = 1;                    // parallel.cp: ranks that split each sequence (ring attention)
  int64_t seq_len_per_cp_rank = 0;  // seq_len / cp: the tokens of a sequence one rank holds

  // Validates `config` for `world_size` ranks (InvalidArgument listing every problem, as
  // ValidateJobConfig) and derives the layout.
  static absl::StatusOr<JobLayout> Create(const JobConfig& config, int world_size);
  // The layout of a config that has its defaults applied and no ConfigProblems (the caller
  // checked them: job/job_check.cc reports them beside the job's other problems).
  static JobLayout FromValid(const JobConfig& config, int world_size);

  // Layers held by (pipeline stage, virtual stage).
  int LayersOf(int stage, int virtual_stage) const {
    return chunk_layers[virtual_stage * pp + stage];
  }
  int FirstLayerOf(int stage, int virtual_stage) const {
    return chunk_first_layer[virtual_stage * pp + stage];
  }
  // The pipeline's shape for the schedule builders: pp stages, grad_accum_steps micro-batches.
  PipelineShape pipeline_shape() const;
};

// A few readable lines ("parameters: 124,439,808 (124.4M)", ...), each starting with `prefix`.
std::string FormatJobLayout(const JobLayout& layout, const std::string& prefix);

}  // namespace loom
