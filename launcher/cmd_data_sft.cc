// `loom data sft`: fine-tuning examples (JSONL) in, token shards with loss masks and document
// starts out (data/sft_prepare.h says what it promises; docs/sft.md the formats).
#include <iostream>

#include "data/sft_prepare.h"
#include "launcher/command.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Reads JSONL files of fine-tuning examples, one per line: {\"prompt\": ..., \"response\": "
    "...}\n"
    "or {\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": ...}]}. "
    "Renders each\n"
    "with a chat template, encodes it with the byte tokenizer and packs the examples into\n"
    "DIR/train_000000.bin and DIR/val_000000.bin, each with a .mask side file (token flags):\n"
    "only assistant tokens (and the end-of-text after them) count in the loss, and attention\n"
    "stays inside each example. A malformed line is reported as FILE:LINE.";

absl::Status RunDataSft(const std::vector<std::string>& args) {
  SftPrepareOptions o;
  FlagSet flags("loom data sft", kDescription);
  flags.Repeated("--input", &o.inputs, "FILE", "JSONL files of examples").TakesWords().Required();
  flags.String("--out", &o.out_dir, "DIR", "output directory (created if missing)").Required();
  flags.String("--template", &o.template_name, "NAME|FILE",
               "chat template: qa, chatml, plain, or a text-format SftTemplate file "
               "(proto/sft.proto)");
  flags.Double("--val-fraction", &o.val_fraction, "F",
               "fraction of examples for validation, spread evenly (0 for none)");
  flags.Int("--seq-len", &o.seq_len, "T",
            "the training job's data.seq_len: examples are packed so that no training sample "
            "cuts one (0: one stream)");
  bool no_pack = false;
  flags.Bool("--no-pack", &no_pack,
             "with --seq-len: one example per sample, starting at position 0 as a prompt does "
             "when generating (positions are not reset inside a packed sample)");
  flags.Bool("--overwrite", &o.overwrite, "replace shards an earlier run left in DIR");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  o.pack = !no_pack;
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
  std::cout << "tokenizer: " << r.tokenizer_path << "\ntemplate: " << r.template_path << "\n";
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(data_sft, "data sft",
                      "pack fine-tuning examples (JSONL) into shards with loss masks", RunDataSft);

}  // namespace loom
