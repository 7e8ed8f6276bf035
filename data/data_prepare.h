// `loom data prepare` as a library call: turns text files into token shards for training.
//
// Every input file is one document: its bytes are encoded with the tokenizer (the byte
// tokenizer, or the tokenizer.json / .model given, see data/tokenizer.h), preceded by the
// tokenizer's begin-of-text id if it has one (LLaMA) and followed by its end-of-text id.
// Directories are walked recursively; each input's files are taken in sorted (bytewise) path order,
// inputs in the order given. A deterministic, evenly spread fraction of the documents goes to the
// validation split (at least one when the fraction is > 0 and there are at least two documents;
// never all of them). Tokens of each split are packed, in document order, into llm.c shards of at
// most shard_tokens tokens: DIR/train_000000.bin, ... and DIR/val_000000.bin, ..., with uint16 ids
// when the vocabulary has at most 65536 ids and uint32 ids (llm.c's LLaMA-3 header,
// data/token_shard.h) above. The tokenizer goes beside them for the trainer: DIR/tokenizer.json
// (the byte tokenizer's description, or a copy of the given tokenizer.json) or DIR/tokenizer.model
// (a copy of the SentencePiece model). Every file is written atomically, so an interrupted run
// leaves no torn shard.
//
// Threads: documents are encoded on `threads` threads in batches, and a large document in
// pieces cut after a newline where the tokenizer allows it (Tokenizer::SplitsAfterNewline);
// the output is the same, byte for byte, for any thread count.
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
  std::string tokenizer;   // a tokenizer file or directory; empty: the byte tokenizer
  int threads = 0;         // 0: one per hardware thread
  // A document is cut into pieces of about this many bytes (where the tokenizer allows).
  int64_t piece_bytes = 1 << 20;
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
  std::string tokenizer_type;                 // "byte", "bpe", "sentencepiece"
  int vocab_size = 0;
  int id_bytes = 2;           // of the shards' ids
  int threads = 1;            // used
  int64_t input_bytes = 0;    // of all documents
  double encode_seconds = 0;  // reading and encoding, without writing shards
};

// Errors: a missing input (naming it), an input listed twice, no documents, a bad option, an
// out_dir that already holds shards without `overwrite`, or a failed read / write (naming the
// file).
absl::StatusOr<DataPrepareResult> PrepareData(const DataPrepareOptions& options);

class Tokenizer;
// Writes the tokenizer beside shards in `out_dir` for the trainer: DIR/tokenizer.json (the byte
// tokenizer's description when `source` is empty, else a copy of the tokenizer.json `source`
// names) or DIR/tokenizer.model (a copy of the SentencePiece model), removing the other name.
// `source` may be a directory holding either (LoadTokenizer's rule). Returns the path written.
absl::StatusOr<std::string> WriteTokenizerBeside(const std::string& out_dir,
                                                 const Tokenizer& tokenizer,
                                                 const std::string& source);

// The documents (0-based, of `documents`) that go to validation, ascending.
std::vector<int64_t> ValidationDocuments(int64_t documents, double val_fraction);

}  // namespace loom
