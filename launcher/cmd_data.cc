// `loom data prepare`: text files in, llm.c token shards and tokenizer.json out (see
// data/data_prepare.h for what it promises).
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data/data_prepare.h"
#include "launcher/command.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Encodes every file under the inputs (files or directories, walked recursively in sorted\n"
    "order) as one document, with the byte tokenizer (vocab 257: bytes, then end-of-text) or\n"
    "the --tokenizer given (a Hugging Face tokenizer.json with byte-level BPE, GPT-2 or LLaMA-3\n"
    "style, or a SentencePiece .model), between the tokenizer's begin-of-text (if any) and\n"
    "end-of-text ids, on several threads. Writes llm.c token shards DIR/train_000000.bin ...\n"
    "and DIR/val_000000.bin ... (32-bit ids when the vocabulary exceeds 65536), plus the\n"
    "tokenizer as DIR/tokenizer.json or DIR/tokenizer.model. Files holding NUL bytes (binary)\n"
    "are encoded too, with a warning.";

absl::Status RunDataPrepare(const std::vector<std::string>& args) {
  DataPrepareOptions options;
  FlagSet flags("loom data prepare", kDescription);
  flags.Repeated("--input", &options.inputs, "PATH", "files or directories to encode")
      .TakesWords()
      .Required();
  flags
      .String("--out", &options.out_dir, "DIR",
              "output directory (created if missing; removed again if the run fails)")
      .Required();
  flags.Double("--val-fraction", &options.val_fraction, "F",
               "fraction of documents for validation, spread evenly (0 for none; at least one "
               "document when > 0 and there are >= 2)");
  // PrepareData checks the ranges of both numbers, naming these flags.
  flags.Int64("--shard-tokens", &options.shard_tokens, "N", "tokens per shard");
  flags.Bool("--overwrite", &options.overwrite, "replace shards an earlier run left in DIR");
  flags.String("--tokenizer", &options.tokenizer, "PATH",
               "tokenizer.json, a SentencePiece .model, or a directory holding either (default: "
               "the byte tokenizer)");
  flags.Int("--threads", &options.threads, "N", "encoding threads (0: one per hardware thread)");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DataPrepareResult r, PrepareData(options));
  auto shards = [](const std::vector<std::string>& paths) -> std::string {
    if (paths.empty()) return "";
    if (paths.size() == 1) return absl::StrCat(": ", paths[0]);
    return absl::StrCat(": ", paths.front(), " .. ", paths.back());
  };
  std::cout << "documents: " << r.documents << " (train " << r.train_documents << ", val "
            << r.val_documents << ")\n"
            << "train: " << r.train_tokens << " tokens in " << r.train_shards.size() << " shard(s)"
            << shards(r.train_shards) << "\n"
            << "val: " << r.val_tokens << " tokens in " << r.val_shards.size() << " shard(s)"
            << shards(r.val_shards) << "\n";
  std::cout << "tokenizer: " << r.tokenizer_type << ", vocab " << r.vocab_size << " ("
            << r.id_bytes * 8 << "-bit ids in the shards), written to " << r.tokenizer_path << "\n";
  const double mb = static_cast<double>(r.input_bytes) / 1e6;
  std::cout << "encoded " << mb << " MB in " << r.encode_seconds << " s on " << r.threads
            << " thread(s): " << (r.encode_seconds > 0 ? mb / r.encode_seconds : 0.0) << " MB/s, "
            << (r.encode_seconds > 0
                    ? static_cast<double>(r.train_tokens + r.val_tokens) / r.encode_seconds
                    : 0.0)
            << " tokens/s\n";
  if (!r.binary_documents.empty()) {
    std::cerr << "loom data prepare: warning: " << r.binary_documents.size()
              << " input file(s) look binary (they contain NUL bytes) and were encoded byte for "
                 "byte anyway; remove them from the inputs if they are not text:\n";
    constexpr size_t kShown = 10;
    for (size_t i = 0; i < r.binary_documents.size() && i < kShown; ++i) {
      std::cerr << "  " << r.binary_documents[i] << "\n";
    }
    if (r.binary_documents.size() > kShown) {
      std::cerr << "  ... and " << r.binary_documents.size() - kShown << " more\n";
    }
  }
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(
    data_prepare, "data prepare",
    "encode text files into llm.c token shards (byte, BPE or SentencePiece tokenizer)",
    RunDataPrepare);

}  // namespace loom
