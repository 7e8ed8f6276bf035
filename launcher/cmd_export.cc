// `loom export --format llmc|loom|safetensors|hf (--config F [--set ...] | --from FILE|DIR)
// --out PATH [--bf16] [--dtype f32|bf16|f16] [--max-shard-mb N]`:
// writes a model's weights. With a job config: the job's model as training would start it
// (model.init_from, or the random init from runtime.seed). With --from: converts a model file
// (llm.c or loom) or a Hugging Face directory to another format, or rewrites it (e.g. llm.c
// fp32 to bf16); from a checkpoint directory: its consolidated weights, whatever layout saved
// it. --format hf writes a Hugging Face directory (config.json + safetensors) that transformers
// loads. --out may not be an input, or lie inside an input or inside any checkpoint directory
// (exit code 2).
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "job/config.h"
#include "launcher/command.h"
#include "model/gpt_params.h"
#include "runtime/files.h"
#include "runtime/status.h"
#include "train/model_export.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Writes model weights to PATH, from exactly one of:\n"
    "  --config F  the job's model as training starts it: model.init_from when set, else the\n"
    "              random init from runtime.seed (--set overrides fields as in train)\n"
    "  --from FILE an existing llm.c or loom model file, converted\n"
    "  --from DIR  a Hugging Face model directory (config.json + safetensors), converted\n"
    "  --from DIR  a checkpoint (step directory, or checkpoint.dir for its latest): the\n"
    "              consolidated weights of any layout\n"
    "Formats: llmc = llm.c GPT-2 model file (GPT2 family, tied embeddings, ffn = 4 * hidden);\n"
    "loom = loom model file, any family, the whole model shape in its header; safetensors =\n"
    "one F32 tensor per parameter, named as in loom (global shapes); hf = a Hugging Face\n"
    "directory PATH: config.json and model.safetensors (or shards and their index) as\n"
    "GPT2LMHeadModel or LlamaForCausalLM name them, unpadded vocabulary.";

// Why writing `out` could destroy a checkpoint or the input (`inputs`: --from, or the job's
// model.init_from), or empty: `out` may not be an input, lie inside an input directory, or lie
// inside any checkpoint directory (a step directory with a manifest, or a checkpoint.dir with a
// `latest` file or a job's lock).
std::string OutputProblem(const std::string& out, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path o = fs::weakly_canonical(fs::absolute(out, ec), ec);
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    const fs::path i = fs::weakly_canonical(fs::absolute(in, ec), ec);
    if (o == i) return absl::StrCat("--out ", out, " is the input ", in, ": it would be destroyed");
    const std::string is = i.string() + "/";
    if (absl::StartsWith(o.string(), is)) {
      return absl::StrCat("--out ", out, " lies inside the input ", in);
    }
  }
  for (fs::path dir = o.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    for (const char* marker : {"manifest.pb", "latest", ".loom.lock"}) {
      // `latest` counts when it names a step, as a checkpoint.dir's does.
      if (fs::exists(dir / marker, ec) &&
          (std::string(marker) != "latest" ||
           absl::StartsWith(ReadFile((dir / marker).string()).value_or(""), "step_"))) {
        return absl::StrCat("--out ", out, " lies inside the checkpoint directory ", dir.string(),
                            " (it holds ", marker, "): writing there could destroy a checkpoint");
      }
    }
    if (dir == dir.parent_path()) break;
  }
  return "";
}

absl::Status RunExport(const std::vector<std::string>& args) {
  std::string config_path;
  std::vector<std::string> overrides;
  std::string format_name, out, from;
  bool bf16 = false;
  std::string dtype_name = "f32";
  double max_shard_mb = 0;
  FlagSet flags("loom export", kDescription);
  flags.Choice("--format", &format_name, {"llmc", "loom", "safetensors", "hf"}, "the file format")
      .Required();
  flags.String("--out", &out, "PATH", "the file (--format hf: the directory) to write").Required();
  flags.JobFlags(&config_path, &overrides, /*required=*/false);
  flags.String("--from", &from, "FILE|DIR", "a model file or a checkpoint instead of a job");
  flags.Bool("--bf16", &bf16, "llm.c version 5 (bf16 weights) instead of fp32; --format llmc only");
  flags.Choice("--dtype", &dtype_name, {"f32", "bf16", "f16"},
               "the tensors' dtype; --format hf only");
  flags.Double("--max-shard-mb", &max_shard_mb, "N",
               "--format hf: shards of at most this many MiB with model.safetensors.index.json "
               "(0 = one model.safetensors)");
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
  {
    std::vector<std::string> inputs = {from};
    if (!config_path.empty()) {
      inputs.push_back(config_path);
      auto job = LoadJobConfig(config_path, overrides);
      if (job.ok()) inputs.push_back(job->model().init_from());
    }
    const std::string problem = OutputProblem(out, inputs);
    if (!problem.empty()) return absl::InvalidArgumentError(problem);
  }

  LoadedWeights weights;
  std::string source;
  if (!from.empty()) {
    LOOM_ASSIGN_OR_RETURN(weights, ReadWholeModel(from));
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
  ExportOptions options;
  options.llmc_bf16 = bf16;
  LOOM_ASSIGN_OR_RETURN(options.dtype, ParseDType(dtype_name));
  if (max_shard_mb < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-shard-mb expects a number of MiB >= 0, got ", max_shard_mb));
  }
  options.max_shard_bytes = static_cast<int64_t>(max_shard_mb * (1 << 20));
  LOOM_RETURN_IF_ERROR(WriteModelWeights(out, format, weights, options));
  const GptConfig& c = weights.config;
  std::cout << "wrote " << out << " ("
            << (format == ExportFormat::kLlmc   ? (bf16 ? "llm.c bf16" : "llm.c fp32")
                : format == ExportFormat::kLoom ? "loom f32"
                : format == ExportFormat::kHf
                    ? absl::StrCat("Hugging Face ",
                                   c.is_llama() ? "LlamaForCausalLM " : "GPT2LMHeadModel ",
                                   dtype_name)
                    : "safetensors f32")
            << "): " << (c.is_llama() ? "LLaMA" : "GPT-2") << ", " << c.layers << " layers, hidden "
            << c.hidden << ", " << c.heads << " heads (" << c.kv_heads << " kv), vocab " << c.vocab
            << " (padded " << c.padded_vocab << "), " << GptParamLayout(c).total()
            << " values, from " << source << "\n";
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(model_export, "export",
                      "write model weights (llm.c, loom, safetensors or Hugging Face) from a job, "
                      "model or checkpoint",
                      RunExport);

}  // namespace loom
