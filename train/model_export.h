// Model weights into and out of loom, the work behind `loom export` and what `loom generate`
// loads: the weights a job's model starts from (model.init_from, or the random init from
// runtime.seed, exactly as the trainer builds them), the weights at any path (checkpoint,
// Hugging Face directory, llm.c or loom file) whole or as one rank's slices, and writing weights
// as an llm.c GPT-2 file, a loom model file (model/model_file.h), loom-named safetensors or a
// Hugging Face directory (model/hf_format.h). Kept apart from the command so tests can call it.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/model_file.h"
#include "parallel/param_table.h"
#include "proto/job.pb.h"
#include "runtime/dtype.h"

namespace loom {

enum class ExportFormat { kLlmc, kLoom, kSafetensors, kHf };

// "llmc", "loom", "safetensors" or "hf"; anything else is an error listing them.
absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name);

// The starting weights of the job's model (defaults applied to `job`): the contents of
// model.init_from when set, checked against the job's model shape; otherwise InitParams with
// runtime.seed. Errors name the field (model.*, model.init_from).
absl::StatusOr<LoadedWeights> JobInitialWeights(const JobConfig& job);

// The consolidated weights of a checkpoint (a step directory, or a checkpoint root whose
// `latest` names one), whatever layout saved it: the fp32 master weights where saved, else the
// weights; the model is the saving job's. Every slice read is checksummed.
absl::StatusOr<LoadedWeights> ReadCheckpointWeights(const std::string& path);

// The model at `path`: a checkpoint (step directory, or a checkpoint.dir whose `latest` names
// one; the saving job's model), a Hugging Face model directory (config.json), or an llm.c or
// loom model file; headers only, no weights read.
absl::StatusOr<GptConfig> ReadModelConfigAt(const std::string& path);

// The whole model at `path` (any of the above) in one process, in its own model's layout
// (GptParamLayout(config); a HF model unpadded). For `loom generate` and `export --from`.
absl::StatusOr<LoadedWeights> ReadWholeModel(const std::string& path);

// This rank's flat buffer, laid out as `table` (any tensor rank, pipeline stage and padded
// vocab of the model `model`), cut from the weights at `path` (any of the above) reading only
// the slices the table holds. `model` must match the stored model apart from the padding.
absl::StatusOr<std::vector<float>> ReadWeightSlicesAt(const std::string& path,
                                                      const GptConfig& model,
                                                      const ParamTable& table);

// Writes `weights` to `path` in `format`. kSafetensors: one F32 tensor per parameter under its
// global name and global shape (padded vocabulary rows included), readable by the Python
// `safetensors` package. bf16 (llm.c version 5) only with kLlmc; the llm.c
// format holds GPT-2 models only, so a LLaMA-style model must go to kLoom.
absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, bool bf16);

// kHf: a Hugging Face directory `path` (GPT2LMHeadModel or LlamaForCausalLM), tensors in
// `dtype` (f32, bf16 or f16), sharded at `max_shard_bytes` when > 0; the other formats as
// above, where dtype must be f32 (llm.c's bf16 is the `bf16` flag of WriteModelWeights).
struct ExportOptions {
  bool llmc_bf16 = false;
  DType dtype = DType::kF32;
  int64_t max_shard_bytes = 0;
};
absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, const ExportOptions& options);

}  // namespace loom
