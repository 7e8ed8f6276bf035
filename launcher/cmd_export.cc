// `loom export --format llmc|loom|safetensors (--config F [--set ...] | --from FILE|DIR) --out PATH
// [--bf16]`:
// writes a model's weights. With a job config: the job's model as training would start it
// (model.init_from, or the random init from runtime.seed). With --from: converts a model file
// (llm.c or loom) to the other format, or rewrites it (e.g. llm.c fp32 to bf16); from a
// checkpoint directory: its consolidated weights, whatever layout saved it.
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "launcher/command.h"
#include "job/config.h"
#include "train/model_export.h"
#include "model/gpt_params.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Writes model weights to PATH, from exactly one of:\n"
    "  --config F  the job's model as training starts it: model.init_from when set, else the\n"
    "              random init from runtime.seed (--set overrides fields as in train)\n"
    "  --from FILE an existing llm.c or loom model file, converted\n"
    "  --from DIR  a checkpoint (step directory, or checkpoint.dir for its latest): the\n"
    "              consolidated weights of any layout\n"
    "Formats: llmc = llm.c GPT-2 model file (GPT2 family, tied embeddings, ffn = 4 * hidden);\n"
    "loom = loom model file, any family, the whole model shape in its header; safetensors =\n"
    "one F32 tensor per parameter, named as in loom (global shapes).";

absl::Status RunExport(const std::vector<std::string>& args) {
  std::string config_path;
  std::vector<std::string> overrides;
  std::string format_name, out, from;
  bool bf16 = false;
  FlagSet flags("loom export", kDescription);
  flags.Choice("--format", &format_name, {"llmc", "loom", "safetensors"}, "the file format")
      .Required();
  flags.String("--out", &out, "PATH", "the file to write").Required();
  flags.JobFlags(&config_path, &overrides, /*required=*/false);
  flags.String("--from", &from, "FILE|DIR", "a model file or a checkpoint instead of a job");
  flags.Bool("--bf16", &bf16, "llm.c version 5 (bf16 weights) instead of fp32; --format llmc only");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  if (config_path.empty() == from.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("give exactly one of --config and --from\n", flags.Usage()));
  }
  if (!from.empty() && !overrides.empty()) {
    return absl::InvalidArgumentError("--set applies to --config only, not to --from");
  }
  LOOM_ASSIGN_OR_RETURN(ExportFormat format, ParseExportFormat(format_name));

  LoadedWeights weights;
  std::string source;
  if (!from.empty()) {
    std::error_code ec;
    if (std::filesystem::is_directory(from, ec)) {
      LOOM_ASSIGN_OR_RETURN(weights, ReadCheckpointWeights(from));
    } else {
      LOOM_ASSIGN_OR_RETURN(weights, ReadModelFile(from));
    }
    source = from;
  } else {
    LOOM_ASSIGN_OR_RETURN(JobConfig job, LoadJobConfig(config_path, overrides));
    auto w = JobInitialWeights(job);
    if (!w.ok()) {
      return absl::Status(w.status().code(), absl::StrCat(config_path, ": ", w.status().message()));
    }
    weights = std::move(*w);
    source = job.model().init_from().empty()
                 ? absl::StrCat("random init, runtime.seed ", job.runtime().seed())
                 : job.model().init_from();
  }
  LOOM_RETURN_IF_ERROR(WriteModelWeights(out, format, weights, bf16));
  const GptConfig& c = weights.config;
  std::cout << "wrote " << out << " ("
            << (format == ExportFormat::kLlmc   ? (bf16 ? "llm.c bf16" : "llm.c fp32")
                : format == ExportFormat::kLoom ? "loom f32"
                                                : "safetensors f32")
            << "): " << (c.is_llama() ? "LLaMA" : "GPT-2") << ", " << c.layers << " layers, hidden "
            << c.hidden << ", " << c.heads << " heads (" << c.kv_heads << " kv), vocab " << c.vocab
            << " (padded " << c.padded_vocab << "), " << GptParamLayout(c).total()
            << " values, from " << source << "\n";
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(model_export, "export",
                      "write model weights (llm.c or loom file) from a job config or a model file",
                      RunExport);

}  // namespace loom
