// Byte-level BPE from a Hugging Face tokenizer.json (GPT-2, LLaMA-3 and models that share their
// pre-tokenizers), giving the ids of `tokenizers`' encode(text, add_special_tokens=False).
//
// What a tokenizer.json may hold (anything else is refused, naming the field):
//   normalizer     null.
//   pre_tokenizer  ByteLevel (use_regex: the GPT-2 regex; add_prefix_space honoured), or a
//                  Sequence of a Split on the GPT-2 or LLaMA-3 regex (behavior Isolated, not
//                  inverted) and a ByteLevel without regex (data/bpe_pretokenize.h).
//   model          BPE: vocab, merges ("a b" strings or [a, b] pairs; rank = position),
//                  ignore_merges, unk_token; no dropout, subword prefix/suffix, byte_fallback
//                  or fuse_unk.
//   added_tokens   matched in the text before pre-tokenization, leftmost-longest, the ones with
//                  normalized false first; lstrip / rstrip honoured, single_word refused.
//   decoder        ByteLevel (or null).
//   post_processor ignored: it only adds special tokens, which Encode never does.
// Ids may have gaps (LLaMA-3-style special tokens far above the BPE vocabulary): vocab_size is
// the largest id + 1, and decoding an id nobody holds is an error. End of text is the first of
// <|endoftext|>, <|end_of_text|>, </s>, <eos>, <|eos|> that is a token; begin of text the first
// of <|begin_of_text|>, <s>, <bos>, <|startoftext|> (only if it differs from end of text).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"
#include "data/tokenizer_json.h"

namespace loom {

// `root` is the parsed tokenizer.json; `path` is for messages only.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadBpeTokenizer(const std::string& path,
                                                            const json::Value& root);

}  // namespace loom
