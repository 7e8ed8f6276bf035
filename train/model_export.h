// Model weights out of loom, the work behind `loom export`: the weights a job's model starts
// from (model.init_from, or the random init from runtime.seed, exactly as the trainer builds
// them), and writing weights as an llm.c GPT-2 file or a loom model file (model/model_file.h).
// Kept apart from the command so tests can call it.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/model_file.h"
#include "proto/job.pb.h"

namespace loom {

enum class ExportFormat { kLlmc, kLoom, kSafetensors };

// "llmc", "loom" or "safetensors"; anything else is an error listing them.
absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name);

// The starting weights of the job's model (defaults applied to `job`): the contents of
// model.init_from when set, checked against the job's model shape; otherwise InitParams with
// runtime.seed. Errors name the field (model.*, model.init_from).
absl::StatusOr<LoadedWeights> JobInitialWeights(const JobConfig& job);

// The consolidated weights of a checkpoint (a step directory, or a checkpoint root whose
// `latest` names one), whatever layout saved it: the fp32 master weights where saved, else the
// weights; the model is the saving job's. Every slice read is checksummed.
absl::StatusOr<LoadedWeights> ReadCheckpointWeights(const std::string& path);

// Writes `weights` to `path` in `format`. kSafetensors: one F32 tensor per parameter under its
// global name and global shape (padded vocabulary rows included), readable by the Python
// `safetensors` package. bf16 (llm.c version 5) only with kLlmc; the llm.c
// format holds GPT-2 models only, so a LLaMA-style model must go to kLoom.
absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, bool bf16);

}  // namespace loom
