// `loom data prepare`: text files in, llm.c token shards and tokenizer.json out (see
// data/data_prepare.h for what it promises).
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "launcher/command.h"
#include "data/data_prepare.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Encodes every file under the inputs (files or directories, walked recursively in sorted\n"
    "order) as one document with the byte tokenizer (vocab 257: bytes, then end-of-text) and\n"
    "writes llm.c token shards DIR/train_000000.bin ... and DIR/val_000000.bin ..., plus\n"
    "DIR/tokenizer.json. Files holding NUL bytes (binary) are encoded too, with a warning.";

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
  std::cout << "tokenizer: " << r.tokenizer_path << "\n";
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

LOOM_REGISTER_COMMAND(data_prepare, "data prepare",
                      "encode text files into llm.c token shards (byte tokenizer)", RunDataPrepare);

}  // namespace loom
