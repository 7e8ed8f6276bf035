// `loom data sft` as a library call: supervised fine-tuning examples (JSONL) in, token shards
// with token flags (data/token_flags.h) out.
//
// Input: JSONL files, one example per line (blank lines are skipped), each either
// {"prompt": P, "response": R} or {"messages": [{"role": "system"|"user"|"assistant",
// "content": C}, ...]} with at least one assistant message. An example is rendered by a chat
// template (proto/sft.proto: SftTemplate; built-in "qa", "chatml", "plain", or a text-format
// file), every turn encoded on its own (prefix, content and suffix as separate pieces, so a
// mask boundary is a token boundary), then end-of-text. Flags: the example's first token starts
// a document; assistant content, assistant suffix and the end-of-text are loss tokens; all else
// (system and user turns, the assistant prefix) is context.
//
// Packing: examples back to back, in input order, into DIR/train_000000.bin and
// DIR/val_000000.bin (llm.c shards) with their .mask side files; a deterministic, evenly spread
// val_fraction of the examples goes to validation (ValidationDocuments). With seq_len = T > 0
// the shards are cut for the data loader's samples (token k*T .. k*T + T): an example never
// crosses a sample boundary; the rest of a sample is padded with end-of-text tokens (context,
// their own document), an example longer than T is cut to its first T tokens (counted in the
// result), and one padding token ends the shard so its last sample is whole; with pack = false
// each example gets a sample of its own. With seq_len 0
// examples are packed as one stream and may straddle samples (attention still stays inside each
// example). DIR/tokenizer.json and DIR/sft_template.textproto (the template used) are written
// too. Every file is written atomically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/sft.pb.h"

namespace loom {

// The named built-in templates ("qa", "chatml", "plain") or a text-format SftTemplate file.
absl::StatusOr<data::SftTemplate> LoadSftTemplate(const std::string& name_or_path);

// One example's tokens and flags as SftPrepare writes them (before packing and truncation).
// Errors name `where` ("file:line") and what is wrong.
struct RenderedExample {
  std::vector<uint16_t> tokens;
  std::vector<uint8_t> flags;
};
absl::StatusOr<RenderedExample> RenderSftExample(const data::SftExample& example,
                                                 const data::SftTemplate& tmpl,
                                                 const std::string& where);
// The text a prompt becomes for generation: the user turn, then the assistant prefix.
std::string RenderSftPrompt(const std::string& prompt, const data::SftTemplate& tmpl);

struct SftPrepareOptions {
  std::vector<std::string> inputs;  // JSONL files
  std::string out_dir;
  std::string template_name = "qa";  // built-in name or text-format file
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
};

absl::StatusOr<SftPrepareResult> PrepareSftData(const SftPrepareOptions& options);

}  // namespace loom
