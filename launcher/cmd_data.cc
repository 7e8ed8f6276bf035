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

constexpr char kUsage[] =
    "usage: loom data prepare --input PATH [PATH...] --out DIR [--val-fraction F]\n"
    "                         [--shard-tokens N] [--overwrite]\n"
    "  Encodes every file under the inputs (files or directories, walked recursively in sorted\n"
    "  order) as one document with the byte tokenizer (vocab 257: bytes, then end-of-text) and\n"
    "  writes llm.c token shards DIR/train_000000.bin ... and DIR/val_000000.bin ..., plus\n"
    "  DIR/tokenizer.json. Files holding NUL bytes (binary) are encoded too, with a warning.\n"
    "  --input PATH...     files or directories; the flag may also be repeated\n"
    "  --out DIR           output directory (created if missing; removed again if the run\n"
    "                      fails)\n"
    "  --val-fraction F    fraction of documents for validation, spread evenly (default 0.05;\n"
    "                      0 for none; at least one document when > 0 and there are >= 2)\n"
    "  --shard-tokens N    tokens per shard (default 100000000)\n"
    "  --overwrite         replace shards an earlier run left in DIR";

absl::StatusOr<DataPrepareOptions> ParseArgs(const std::vector<std::string>& args) {
  DataPrepareOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_inline_value = false;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
      has_inline_value = true;
    }
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (has_inline_value) return value;
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value\n", kUsage));
      }
      return args[++i];
    };
    if (flag == "--input") {
      if (has_inline_value) {
        options.inputs.push_back(value);
        continue;
      }
      const size_t before = options.inputs.size();
      while (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
        options.inputs.push_back(args[++i]);
      }
      if (options.inputs.size() == before) {
        return absl::InvalidArgumentError(absl::StrCat("--input needs a path\n", kUsage));
      }
    } else if (flag == "--out") {
      LOOM_ASSIGN_OR_RETURN(options.out_dir, take_value());
    } else if (flag == "--val-fraction") {
      LOOM_ASSIGN_OR_RETURN(std::string v, take_value());
      if (!absl::SimpleAtod(v, &options.val_fraction)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--val-fraction: \"", v, "\" is not a number"));
      }
    } else if (flag == "--shard-tokens") {
      LOOM_ASSIGN_OR_RETURN(std::string v, take_value());
      if (!absl::SimpleAtoi(v, &options.shard_tokens)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--shard-tokens: \"", v, "\" is not an integer"));
      }
    } else if (flag == "--overwrite" && !has_inline_value) {
      options.overwrite = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument ", args[i], "\n", kUsage));
    }
  }
  if (options.inputs.empty() || options.out_dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--input and --out are required\n", kUsage));
  }
  return options;
}

absl::Status RunDataPrepare(const std::vector<std::string>& args) {
  if (WantsHelp(args, kUsage)) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DataPrepareOptions options, ParseArgs(args));
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
                      "encode text files into llm.c token shards (byte tokenizer)", kUsage,
                      RunDataPrepare);

}  // namespace loom
