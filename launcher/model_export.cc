#include "launcher/model_export.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "launcher/trainer.h"
#include "model/gpt_params.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace loom {

absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name) {
  if (name == "llmc") return ExportFormat::kLlmc;
  if (name == "loom") return ExportFormat::kLoom;
  return absl::InvalidArgumentError(
      absl::StrCat("--format '", name,
                   "' is not a model file format (expected llmc = llm.c GPT-2 file, or "
                   "loom = loom model file, any family)"));
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

absl::Status WriteModelWeights(const std::string& path, ExportFormat format,
                               const LoadedWeights& weights, bool bf16) {
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
