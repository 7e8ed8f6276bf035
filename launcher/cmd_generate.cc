// `loom generate --from CHECKPOINT|MODEL --prompt TEXT`: text from a trained model, streamed to
// stdout as it is decoded (train/generate.h says what it promises). Under mpirun the ranks form
// one tensor group and generate together; rank 0 prints.
#include <iostream>

#include "absl/strings/str_format.h"
#include "launcher/command.h"
#include "parallel/world.h"
#include "runtime/status.h"
#include "train/generate.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Continues TEXT with a model: a checkpoint (a step directory, or a checkpoint.dir for its\n"
    "latest step; saved by any layout), a Hugging Face directory or a model file (llm.c or\n"
    "loom); each rank reads only its slices. Decoding keeps a KV\n"
    "cache and prints each token as it is chosen. --temperature 0 is greedy; otherwise the\n"
    "logits are divided by the temperature, cut to the --top-k largest and then to the\n"
    "--top-p nucleus, and sampled with --seed. --template renders TEXT as the user turn of an\n"
    "SFT chat template (qa, chatml, plain, or the sft_template.textproto `loom data sft` wrote)\n"
    "followed by the assistant's cue, and generation also stops at the template's end of turn\n"
    "(its assistant suffix less trailing whitespace, e.g. <|im_end|>). --tokenizer (or the\n"
    "tokenizer.json / tokenizer.model of a Hugging Face --from directory) encodes the prompt\n"
    "and decodes the output; only whole UTF-8 characters are printed. Under mpirun -np N the N\n"
    "ranks split the model N ways (tensor parallel) and generate together.";

absl::Status RunGenerate(const std::vector<std::string>& args) {
  GenerateOptions o;
  double temperature = o.sampling.temperature, top_p = o.sampling.top_p;
  int top_k = o.sampling.top_k;
  int64_t seed = static_cast<int64_t>(o.seed);
  bool no_stop = false, quiet = false;
  FlagSet flags("loom generate", kDescription);
  flags.String("--from", &o.from, "CHECKPOINT|MODEL", "the weights").Required();
  flags.String("--prompt", &o.prompt, "TEXT", "the text to continue").Required();
  flags.Int("--max-new-tokens", &o.max_new_tokens, "N", "tokens to generate at most").AtLeast(0);
  flags.Double("--temperature", &temperature, "T", "0 = greedy").AtLeast(0);
  flags.Int("--top-k", &top_k, "K", "sample among the K most likely tokens (0 = all)").AtLeast(0);
  flags.Double("--top-p", &top_p, "P", "then among the most likely whose probability reaches P");
  flags.Int64("--seed", &seed, "S", "the sampling seed");
  flags.String("--template", &o.template_name, "NAME|FILE", "render TEXT as an SFT chat turn");
  flags.String("--tokenizer", &o.tokenizer, "PATH",
               "the model's tokenizer.json, SentencePiece .model, or a directory holding either "
               "(default: the one inside a Hugging Face --from directory, else bytes)");
  flags.Choice("--backend", &o.backend, {"cpu", "cuda", "test"}, "where the model runs");
  flags.Bool("--no-stop", &no_stop,
             "keep going past the end-of-text token (and the template's end of turn)");
  flags.Bool("--quiet", &quiet, "print only the generated text (no prompt, no timing line)");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  o.sampling.temperature = static_cast<float>(temperature);
  o.sampling.top_k = top_k;
  o.sampling.top_p = static_cast<float>(top_p);
  o.seed = static_cast<uint64_t>(seed);
  o.stop_at_eot = !no_stop;
  LOOM_ASSIGN_OR_RETURN(World * world, World::Get());
  const bool printer = world->rank() == 0;
  if (printer && !quiet) std::cout << o.prompt << std::flush;
  LOOM_ASSIGN_OR_RETURN(GenerateResult r, Generate(o, world, [&](int32_t, const std::string& text) {
                          if (printer) std::cout << text << std::flush;
                        }));
  if (printer) {
    std::cout << std::endl;
    if (!quiet) {
      std::cerr << absl::StrFormat(
          "generated %d token(s) in %.2f s (%.1f tokens/s), tp %d\n", r.new_ids.size(), r.seconds,
          r.seconds > 0 ? r.new_ids.size() / r.seconds : 0.0, world->size());
    }
  }
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(generate, "generate",
                      "continue a prompt with a checkpoint or model file (KV cache, streamed)",
                      RunGenerate);

}  // namespace loom
