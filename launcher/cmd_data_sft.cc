// `loom data sft`: fine-tuning examples (JSONL) in, token shards with loss masks and document
// starts out (data/sft_prepare.h says what it promises; docs/sft.md the formats).
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "data/sft_prepare.h"
#include "job/config.h"
#include "launcher/command.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Reads JSONL files of fine-tuning examples, one per line: {\"prompt\": ..., \"response\": "
    "...}\n"
    "or {\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": ...}]}. "
    "Renders each\n"
    "with a chat template, encodes it with the byte tokenizer or the --tokenizer given (prompt\n"
    "and response segments each on their own) and packs the examples into\n"
    "DIR/train_000000.bin and DIR/val_000000.bin (32-bit ids when the vocabulary exceeds\n"
    "65536), each with a .mask side file (token flags): only assistant tokens (and the\n"
    "end-of-text after them) count in the loss, and attention stays inside each example.\n"
    "With --config JOB the job's data.sft (template, system prompt, tokenizer, inputs),\n"
    "data.seq_len and the directory of data.train are the defaults; flags override them.\n"
    "A malformed line is reported as FILE:LINE.";

// Where the job's data.train shards live: the directory of its glob, when that has no wildcard.
std::string TrainDir(const JobConfig& job) {
  const std::string dir = std::filesystem::path(job.data().train()).parent_path().string();
  return dir.find_first_of("*?[") == std::string::npos ? dir : "";
}

absl::Status RunDataSft(const std::vector<std::string>& args) {
  SftPrepareOptions o;
  o.template_name.clear();  // set below: the flag, else the job's, else "qa"
  int seq_len = -1;
  std::string config_path;
  std::vector<std::string> overrides;
  FlagSet flags("loom data sft", kDescription);
  flags.Repeated("--input", &o.inputs, "FILE", "JSONL files of examples (default: data.sft.input)")
      .TakesWords();
  flags.String("--out", &o.out_dir, "DIR",
               "output directory, created if missing (default: the directory of data.train)");
  flags.String("--template", &o.template_name, "NAME|FILE",
               "chat template: qa, chatml, plain, or a text-format SftTemplate file "
               "(proto/sft.proto); default data.sft.chat_template, else qa");
  flags.String("--system-prompt", &o.system_prompt, "TEXT",
               "a system turn before every example without one (default data.sft.system_prompt)");
  flags.String("--tokenizer", &o.tokenizer, "PATH",
               "tokenizer.json, a SentencePiece .model, or a directory holding either (default "
               "data.sft.tokenizer, else the byte tokenizer)");
  flags.Int("--threads", &o.threads, "N", "encoding threads (0: one per hardware thread)");
  flags.Double("--val-fraction", &o.val_fraction, "F",
               "fraction of examples for validation, spread evenly (0 for none)");
  flags
      .Int("--seq-len", &seq_len, "T",
           "the training job's data.seq_len: examples are packed so that no training sample "
           "cuts one (0: one stream)")
      .DefaultText("data.seq_len with --config, else 0");
  bool no_pack = false;
  flags.Bool("--no-pack", &no_pack,
             "with --seq-len: one example per sample, starting at position 0 as a prompt does "
             "when generating (positions are not reset inside a packed sample)");
  flags.Bool("--overwrite", &o.overwrite, "replace shards an earlier run left in DIR");
  flags.JobFlags(&config_path, &overrides, /*required=*/false);
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  o.pack = !no_pack;
  o.seq_len = seq_len >= 0 ? seq_len : 0;
  if (!config_path.empty()) {
    LOOM_ASSIGN_OR_RETURN(JobConfig job, LoadJobConfig(config_path, overrides));
    const SftDataConfig& sft = job.data().sft();
    // The job's settings are checked as training checks them, naming the field.
    if (const std::vector<std::string> problems = SftDataProblems(job); !problems.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", problems[0]));
    }
    if (o.template_name.empty()) o.template_name = sft.chat_template();
    if (o.system_prompt.empty()) o.system_prompt = sft.system_prompt();
    if (o.tokenizer.empty()) o.tokenizer = sft.tokenizer();
    if (o.inputs.empty()) o.inputs.assign(sft.input().begin(), sft.input().end());
    if (o.out_dir.empty()) o.out_dir = TrainDir(job);
    if (seq_len < 0) o.seq_len = job.data().seq_len();
  } else if (!overrides.empty()) {
    return absl::InvalidArgumentError("--set applies to --config only");
  }
  if (o.template_name.empty()) o.template_name = "qa";
  if (o.inputs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("give --input (or data.sft.input in the --config job)\n", flags.Usage()));
  }
  if (o.out_dir.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("give --out (or a --config job whose data.train glob has a plain directory)\n",
                     flags.Usage()));
  }
  LOOM_ASSIGN_OR_RETURN(SftPrepareResult r, PrepareSftData(o));
  std::cout << "examples: " << r.examples << " (train " << r.train_examples << ", val "
            << r.val_examples << ")\n"
            << "train: " << r.train_tokens << " tokens, " << r.loss_tokens
            << " of them counted in the loss: " << r.train_shard << " (+ .mask)\n";
  if (!r.val_shard.empty()) {
    std::cout << "val: " << r.val_tokens << " tokens: " << r.val_shard << " (+ .mask)\n";
  }
  if (o.seq_len > 0) {
    std::cout << "packing for seq_len " << o.seq_len << ": " << r.pad_tokens << " padding tokens, "
              << r.truncated << " example(s) cut to " << o.seq_len << " tokens\n";
  }
  std::cout << "tokenizer: " << r.tokenizer_type << ", vocab " << r.vocab_size << " ("
            << r.id_bytes * 8 << "-bit ids in the shards), written to " << r.tokenizer_path
            << "\ntemplate: " << r.template_path << "\n";
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(data_sft, "data sft",
                      "pack fine-tuning examples (JSONL) into shards with loss masks", RunDataSft);

}  // namespace loom
