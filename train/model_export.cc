#include "train/model_export.h"

#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "job/config.h"
#include "model/gpt_params.h"
#include "model/hf_format.h"
#include "model/hf_safetensors.h"
#include "runtime/files.h"
#include "runtime/status.h"
#include "runtime/tensor.h"
#include "train/trainer.h"

namespace loom {

absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name) {
  if (name == "llmc") return ExportFormat::kLlmc;
  if (name == "loom") return ExportFormat::kLoom;
  if (name == "safetensors") return ExportFormat::kSafetensors;
  if (name == "hf") return ExportFormat::kHf;
  return absl::InvalidArgumentError(
      absl::StrCat("--format '", name,
                   "' is not a model file format (expected llmc = llm.c GPT-2 file, "
                   "loom = loom model file, any family, safetensors, or hf = Hugging Face "
                   "directory)"));
}

absl::StatusOr<LoadedWeights> JobInitialWeights(const JobConfig& job) {
  LoadedWeights w;
  w.config = GptConfigFromJob(job);
  LOOM_RETURN_IF_ERROR(w.config.Validate());
  const std::string& from = job.model().init_from();
  if (!from.empty()) {
    // In the job's model: its padded vocabulary, whatever the file's. The file's own norm_eps /
    // rope_theta are not shape: the job's values win, as in training.
    auto params = ReadWeightSlicesAt(from, w.config, GptParamLayout(w.config));
    if (!params.ok()) {
      if (absl::StartsWith(params.status().message(), "model.init_from")) return params.status();
      return absl::Status(params.status().code(),
                          absl::StrCat("model.init_from: ", params.status().message()));
    }
    w.params = std::move(*params);
    return w;
  }
  const ParamTable layout = GptParamLayout(w.config);
  LOOM_ASSIGN_OR_RETURN(Tensor params,
                        Tensor::Zeros(Shape{layout.total()}, DType::kF32, CpuDevice()));
  LOOM_RETURN_IF_ERROR(InitParams(layout, static_cast<uint64_t>(job.runtime().seed()), params));
  LOOM_ASSIGN_OR_RETURN(w.params, params.ToFloatVector());
  return w;
}

absl::StatusOr<LoadedWeights> ReadCheckpointWeights(const std::string& path) {
  LOOM_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(path));
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader, CheckpointReader::Open(dir));
  LoadedWeights w;
  w.config = GptConfigFromJob(reader->manifest().job());
  LOOM_RETURN_IF_ERROR(w.config.Validate());
  const ParamTable layout = GptParamLayout(w.config);
  LOOM_RETURN_IF_ERROR(reader->CheckTable(layout));
  w.params.assign(layout.total(), 0.0f);
  for (const ParamSpec& s : layout.specs()) {
    const CheckpointKind kind = reader->Has(s.name, MASTER) ? MASTER : WEIGHTS;
    LOOM_RETURN_IF_ERROR(reader->ReadBox(s.name, kind, s.pieces[0], w.params.data() + s.offset));
  }
  return w;
}

bool IsCheckpointPath(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) && !IsHfModelDir(path);
}

absl::StatusOr<GptConfig> ReadModelConfigAt(const std::string& path) {
  if (IsCheckpointPath(path)) {
    LOOM_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(path));
    LOOM_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader, CheckpointReader::Open(dir));
    GptConfig c = GptConfigFromJob(reader->manifest().job());
    LOOM_RETURN_IF_ERROR(c.Validate());
    return c;
  }
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<ModelFileReader> reader, ModelFileReader::Open(path));
  return reader->config();
}

absl::StatusOr<LoadedWeights> ReadWholeModel(const std::string& path) {
  if (IsCheckpointPath(path)) return ReadCheckpointWeights(path);
  return ReadModelFile(path);
}

absl::StatusOr<std::vector<float>> ReadWeightSlicesAt(const std::string& path,
                                                      const GptConfig& model,
                                                      const ParamTable& table) {
  if (!IsCheckpointPath(path)) {
    LOOM_ASSIGN_OR_RETURN(std::unique_ptr<ModelFileReader> reader, ModelFileReader::Open(path));
    return ReadModelSlices(*reader, model, table);
  }
  LOOM_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(path));
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader, CheckpointReader::Open(dir));
  LOOM_RETURN_IF_ERROR(CheckSameShape(model, GptConfigFromJob(reader->manifest().job()), path));
  std::vector<float> out(table.total());
  // Weights only (the fp32 master where saved), every box the table holds.
  LOOM_RETURN_IF_ERROR(reader->Load(table, OptimizerView{}, /*with_optimizer=*/false, out.data(),
                                    nullptr, nullptr, nullptr));
  return out;
}

namespace {

// loom's own names and global shapes (model/hf_safetensors.h has the format).
absl::Status WriteSafetensors(const std::string& path, const LoadedWeights& weights) {
  const ParamTable layout = GptParamLayout(weights.config);
  if (static_cast<int64_t>(weights.params.size()) != layout.total()) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: ", weights.params.size(),
                                                   " values for a model of ", layout.total()));
  }
  std::vector<SafetensorsOut> tensors;
  for (const ParamSpec& s : layout.specs()) {
    const float* p = weights.params.data() + s.offset;
    tensors.push_back({s.name, s.shape.dims(), std::vector<float>(p, p + s.numel())});
  }
  const std::string out = EncodeSafetensors(tensors, DType::kF32);
  return AtomicWriteFile(path, out);
}

}  // namespace

absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, bool bf16) {
  ExportOptions options;
  options.llmc_bf16 = bf16;
  return WriteModelWeights(path, format, weights, options);
}

absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, const ExportOptions& options) {
  const bool bf16 = options.llmc_bf16;
  if (format != ExportFormat::kHf && options.dtype != DType::kF32) {
    return absl::InvalidArgumentError("--dtype applies to --format hf only");
  }
  if (format != ExportFormat::kHf && options.max_shard_bytes > 0) {
    return absl::InvalidArgumentError("--max-shard-mb applies to --format hf only");
  }
  if (format == ExportFormat::kHf) {
    if (bf16) {
      return absl::InvalidArgumentError("--bf16 applies to --format llmc only (use --dtype bf16)");
    }
    HfWriteOptions hf;
    hf.dtype = options.dtype;
    hf.max_shard_bytes = options.max_shard_bytes;
    return WriteHfModelDir(path, weights.config, weights.params, hf);
  }
  if (format == ExportFormat::kSafetensors) {
    if (bf16) return absl::InvalidArgumentError("--bf16 applies to --format llmc only");
    return WriteSafetensors(path, weights);
  }
  if (format == ExportFormat::kLoom) {
    if (bf16) {
      return absl::InvalidArgumentError(
          "--bf16 applies to --format llmc only (loom model files hold f32)");
    }
    return WriteLoomModelFile(path, weights.config, weights.params);
  }
  absl::Status s = WriteLlmcModelFile(path, weights.config, weights.params, bf16);
  if (!s.ok() && weights.config.is_llama()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--format llmc: ", s.message(), "; this is a LLaMA-style model, use --format loom or hf"));
  }
  return s;
}

}  // namespace loom
