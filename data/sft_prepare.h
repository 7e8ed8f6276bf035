// `loom data sft` as a library call: supervised fine-tuning examples (JSONL) in, token shards
// with token flags (data/token_flags.h) out.
//
// Input: JSONL files, one example per line (blank lines are skipped), each either
// {"prompt": P, "response": R} or {"messages": [{"role": "system"|"user"|"assistant",
// "content": C}, ...]} with at least one assistant message. An example is rendered by a chat
// template (proto/sft.proto: SftTemplate; built-in "qa", "chatml", "plain", or a text-format
// file; its system_prompt, if any, as a system turn where the example has none) and encoded
// with the tokenizer (the byte tokenizer, or a tokenizer.json / SentencePiece .model:
// data/tokenizer.h) in segments: the context before an assistant's content (system and user
// turns, the assistant prefix) as one piece, the assistant's content and suffix as another,
// and so on; the tokenizer's begin-of-text (if it has one) first, its end-of-text last. Each
// segment is encoded on its own, so a mask boundary is a token boundary (BPE never merges the
// prompt's last characters with the response's first), and a context segment encodes exactly
// as `loom generate --template` encodes the same prompt (RenderSftPrompt). Flags: the
// example's first token starts a document; the assistant segments and the end-of-text after a
// final assistant turn are loss tokens; all else is context.
//
// Packing: examples back to back, in input order, into DIR/train_000000.bin and
// DIR/val_000000.bin (llm.c shards with uint16 ids, or uint32 ids when the vocabulary exceeds
// 65,536: the writer `data prepare` uses, data/token_shard.h) with their .mask side files; a
// deterministic, evenly spread val_fraction of the examples goes to validation
// (ValidationDocuments). With seq_len = T > 0
// the shards are cut for the data loader's samples (token k*T .. k*T + T): an example never
// crosses a sample boundary; the rest of a sample is padded with end-of-text tokens (context,
// their own document), an example longer than T is cut to its first T tokens (counted in the
// result), and one padding token ends the shard so its last sample is whole; with pack = false
// each example gets a sample of its own. With seq_len 0
// examples are packed as one stream and may straddle samples (attention still stays inside each
// example). The tokenizer (DIR/tokenizer.json or DIR/tokenizer.model, as `data prepare` writes
// it) and DIR/sft_template.textproto (the template used, system prompt included) are written
// too. Every file is written atomically; the output is the same for any thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/sft.pb.h"

namespace loom {

class Tokenizer;

// The named built-in templates ("qa", "chatml", "plain") or a text-format SftTemplate file.
absl::StatusOr<data::SftTemplate> LoadSftTemplate(const std::string& name_or_path);

// One example's tokens and flags as SftPrepare writes them (before packing and truncation).
// Errors name `where` ("file:line") and what is wrong.
// `tokenizer` null: the byte tokenizer.
struct RenderedExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> flags;
};
absl::StatusOr<RenderedExample> RenderSftExample(const data::SftExample& example,
                                                 const data::SftTemplate& tmpl,
                                                 const std::string& where,
                                                 const Tokenizer* tokenizer = nullptr);
// The text a prompt becomes for generation: the template's system turn (if it has a
// system_prompt), the user turn, then the assistant prefix. Encoded as one piece, it gives the
// ids of the context segment RenderSftExample makes for the same one-turn example.
std::string RenderSftPrompt(const std::string& prompt, const data::SftTemplate& tmpl);

struct SftPrepareOptions {
  std::vector<std::string> inputs;  // JSONL files
  std::string out_dir;
  std::string template_name = "qa";  // built-in name or text-format file
  std::string system_prompt;         // non-empty: replaces the template's system_prompt
  std::string tokenizer;             // a tokenizer file or directory; empty: the byte tokenizer
  int threads = 0;                   // encoding threads; 0: one per hardware thread
  double val_fraction = 0.05;
  int seq_len = 0;  // 0: one stream; T: samples of the loader never cut an example
  // With seq_len: false puts each example alone at the start of its own sample (padding the
  // rest), so it sits at positions 0.. as a prompt does at generation time (positions are not
  // reset at document starts inside a packed sample).
  bool pack = true;
  bool overwrite = false;
};

struct SftPrepareResult {
  int64_t examples = 0, train_examples = 0, val_examples = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  int64_t loss_tokens = 0;             // counted targets in train
  int64_t pad_tokens = 0;              // padding (seq_len > 0), both splits
  int64_t truncated = 0;               // examples cut to seq_len tokens
  std::string train_shard, val_shard;  // val empty when there is no validation split
  std::string tokenizer_path, template_path;
  std::string tokenizer_type;  // "byte", "bpe", "sentencepiece"
  int vocab_size = 0;
  int id_bytes = 2;  // of the shards' ids
};

absl::StatusOr<SftPrepareResult> PrepareSftData(const SftPrepareOptions& options);

}  // namespace loom
