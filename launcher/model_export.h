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

enum class ExportFormat { kLlmc, kLoom };

// "llmc" or "loom"; anything else is an error listing both.
absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name);

// The starting weights of the job's model (defaults applied to `job`): the contents of
// model.init_from when set, checked against the job's model shape; otherwise InitParams with
// runtime.seed. Errors name the field (model.*, model.init_from).
absl::StatusOr<LoadedWeights> JobInitialWeights(const JobConfig& job);

// Writes `weights` to `path` in `format`. bf16 (llm.c version 5) only with kLlmc; the llm.c
// format holds GPT-2 models only, so a LLaMA-style model must go to kLoom.
absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, bool bf16);

}  // namespace loom
