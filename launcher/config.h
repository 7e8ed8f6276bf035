// The job config: loading a JobConfig (proto/job.proto) from a text-format file, applying
// `--set path.to.field=value` overrides, filling loom's defaults, validating it against a world
// size, and the numbers derived from it (parameter count, gradient accumulation, layers per
// stage, padded vocab) that the trainer and `loom config check` share.
//
// Promises:
// - Every error names where it comes from: parse errors carry file:line:column and the field
//   path (model.layers), override errors carry the whole --set argument and what was expected.
// - Validation reports every problem at once, each naming the fields and the numbers involved.
// - A config that passed ValidateJobConfig for a world size gives DeriveNumbers without error,
//   and the model can be split as the numbers say (nothing is rounded or dropped silently).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "proto/job.pb.h"

namespace loom {

// Parses text-format JobConfig. `source` (usually the file name) prefixes error messages.
// Applies no defaults. Reports every error it can find (up to 20), one line each; after an error
// on a line that opens or closes a block it stops, since later errors would be its echoes.
absl::StatusOr<JobConfig> ParseJobConfigText(const std::string& text, const std::string& source);

// Applies one override "path.to.field=value" in place. Scalars of every type and enums (by
// value name) are accepted; a repeated scalar field takes a comma-separated list, optionally in
// brackets ("parallel.stage_layers=[1,3]"), which replaces its contents; an empty value or "[]"
// clears it. A string value may be wrapped in double quotes.
absl::Status ApplyOverride(JobConfig* config, const std::string& assignment);

// Fills every default (see proto/job.proto) that depends only on the config itself. Idempotent.
// Call it after the overrides so derived defaults (kv_heads, ffn_hidden, seq_len) follow them.
void ApplyDefaults(JobConfig* config);

// Reads `path`, applies the overrides in order, then the defaults. A directory is refused; parse
// errors and every failing override are reported together.
absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path,
                                        const std::vector<std::string>& overrides);

// Pulls "--config F" / "--config=F" and every "--set a=b" / "--set=a=b" out of `args`, leaving
// the other arguments in order. `path` stays empty when --config is absent; --config given twice
// is an error.
absl::Status ExtractConfigFlags(std::vector<std::string>* args, std::string* path,
                                std::vector<std::string>* overrides);

// Every problem with `config` (defaults applied) for a job of `world_size` ranks, one sentence
// each naming the fields and numbers. Empty when the config is runnable.
std::vector<std::string> ConfigProblems(const JobConfig& config, int world_size);

// What this build cannot do yet, for a config with defaults applied: one sentence per feature
// the job asks for, naming the field. Kept apart from ConfigProblems (which says what is wrong
// with a job in itself) so each entry can be deleted as its feature lands. Both `loom config
// check` and `loom train` refuse a job with any entry (see launcher/job_check.h).
std::vector<std::string> NotYetSupported(const JobConfig& config);

// ConfigProblems as one InvalidArgument status ("N problem(s) in the job config:" followed by one
// "  - ..." line per problem), or OK.
absl::Status ValidateJobConfig(const JobConfig& config, int world_size);

// LLaMA's MLP width for a model width: 2/3 of 4 * hidden, rounded up to a multiple of 256.
int64_t LlamaFfnHidden(int64_t hidden);

// Rows of the embedding / LM head: model.vocab rounded up to a multiple of
// model.vocab_pad_multiple * parallel.tp (Megatron's padding), so each tensor rank holds an equal
// slice. The padded rows are not trained (their logits are masked) and not counted as parameters.
int64_t PaddedVocab(const JobConfig& config);

// The model shape a job describes (defaults applied, vocab padded).
GptConfig GptConfigFromJob(const JobConfig& job);

// Exact trainable parameter count of the model (unpadded vocab), from the model's own parameter
// descriptions (model/gpt_params.h GptParameterCount), so the formula lives in one place.
// GPT2: wte V*C + wpe maxT*C + per layer (LN 2C, qkv 3C^2+3C, proj C^2+C, LN 2C, fc C*F+F,
// proj F*C+C) + final LN 2C, + an untied head V*C. LLAMA: embedding V*C + per layer (RMSNorm C,
// q C^2, k and v C*kv*hd each, o C^2, RMSNorm C, gate/up/down 3*C*F) + final RMSNorm C + an
// untied head V*C.
int64_t ParameterCount(const ModelConfig& model);

// Numbers that follow from a valid config and a world size.
struct DerivedNumbers {
  int world_size = 0;
  int dp = 0;  // parallel.dp, or world_size / (tp * pp) when it was 0
  int tp = 0;
  int pp = 0;
  int virtual_stages = 0;
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

  // Layers held by (pipeline stage, virtual stage).
  int LayersOf(int stage, int virtual_stage) const {
    return chunk_layers[virtual_stage * pp + stage];
  }
  int FirstLayerOf(int stage, int virtual_stage) const {
    return chunk_first_layer[virtual_stage * pp + stage];
  }
};

// Validates (as ValidateJobConfig) and computes the derived numbers.
absl::StatusOr<DerivedNumbers> DeriveNumbers(const JobConfig& config, int world_size);

// A few readable lines ("parameters: 124,439,808 (124.4M)", ...), each starting with `prefix`.
std::string FormatDerivedNumbers(const DerivedNumbers& d, const std::string& prefix);

// The config in text format, every set field shown.
std::string JobConfigToText(const JobConfig& config);

}  // namespace loom
