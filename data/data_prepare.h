// `loom data prepare` as a library call: turns text files into token shards for training.
//
// Every input file is one document: its bytes are encoded with the byte tokenizer and followed
// by EOT. Directories are walked recursively; each input's files are taken in sorted (bytewise)
// path order, inputs in the order given. A deterministic, evenly spread fraction of the
// documents goes to the validation split (at least one when the fraction is > 0 and there are at
// least two documents; never all of them). Tokens of each split are packed, in document order,
// into llm.c shards of at most shard_tokens tokens: DIR/train_000000.bin, ... and
// DIR/val_000000.bin, ...; DIR/tokenizer.json describes the tokenizer. Every file is written
// atomically, so an interrupted run leaves no torn shard.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loom {

struct DataPrepareOptions {
  std::vector<std::string> inputs;  // files and directories
  std::string out_dir;
  double val_fraction = 0.05;
  int64_t shard_tokens = 100'000'000;
  bool overwrite = false;  // replace shards an earlier run left in out_dir
};

struct DataPrepareResult {
  int64_t documents = 0;
  int64_t train_documents = 0;
  int64_t val_documents = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  std::string tokenizer_path;
  std::vector<std::string> binary_documents;  // inputs that contain NUL bytes, in input order
};

// Errors: a missing input (naming it), an input listed twice, no documents, a bad option, an
// out_dir that already holds shards without `overwrite`, or a failed read / write (naming the
// file).
absl::StatusOr<DataPrepareResult> PrepareData(const DataPrepareOptions& options);

// The documents (0-based, of `documents`) that go to validation, ascending.
std::vector<int64_t> ValidationDocuments(int64_t documents, double val_fraction);

}  // namespace loom
