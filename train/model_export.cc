#include "train/model_export.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "job/config.h"
#include "train/trainer.h"
#include "runtime/files.h"
#include "model/gpt_params.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace loom {

absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name) {
  if (name == "llmc") return ExportFormat::kLlmc;
  if (name == "loom") return ExportFormat::kLoom;
  if (name == "safetensors") return ExportFormat::kSafetensors;
  return absl::InvalidArgumentError(
      absl::StrCat("--format '", name,
                   "' is not a model file format (expected llmc = llm.c GPT-2 file, "
                   "loom = loom model file, any family, or safetensors)"));
}

absl::StatusOr<LoadedWeights> JobInitialWeights(const JobConfig& job) {
  LoadedWeights w;
  w.config = GptConfigFromJob(job);
  LOOM_RETURN_IF_ERROR(w.config.Validate());
  const std::string& from = job.model().init_from();
  if (!from.empty()) {
    auto file = ReadModelFile(from);
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat("model.init_from: ", file.status().message()));
    }
    LOOM_RETURN_IF_ERROR(CheckSameShape(w.config, file->config, from));
    // The file's own norm_eps / rope_theta are not shape: the job's values win, as in training.
    w.params = std::move(file->params);
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

namespace {

// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range in the data that follows, then the data.
absl::Status WriteSafetensors(const std::string& path, const LoadedWeights& weights) {
  const ParamTable layout = GptParamLayout(weights.config);
  if (static_cast<int64_t>(weights.params.size()) != layout.total()) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: ", weights.params.size(),
                                                   " values for a model of ", layout.total()));
  }
  std::string header = "{\"__metadata__\":{\"format\":\"pt\",\"writer\":\"loom\"}";
  int64_t at = 0;
  for (const ParamSpec& s : layout.specs()) {
    std::vector<std::string> dims;
    for (int64_t d : s.shape.dims()) dims.push_back(absl::StrCat(d));
    const int64_t bytes = s.numel() * 4;
    absl::StrAppend(&header, ",\"", s.name, "\":{\"dtype\":\"F32\",\"shape\":[",
                    absl::StrJoin(dims, ","), "],\"data_offsets\":[", at, ",", at + bytes, "]}");
    at += bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';  // the data starts 8-byte aligned
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  // Parameters are in layout order, back to back, so the data is the flat buffer itself.
  out.append(reinterpret_cast<const char*>(weights.params.data()), weights.params.size() * 4);
  return AtomicWriteFile(path, out);
}

}  // namespace

absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, bool bf16) {
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
        "--format llmc: ", s.message(), "; this is a LLaMA-style model, use --format loom"));
  }
  return s;
}

}  // namespace loom
