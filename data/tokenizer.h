// Tokenizers: text to token ids and back, behind one interface (Tokenizer) that `data prepare`,
// the trainer's samples, SFT rendering and `loom generate` share.
//
// Three kinds, picked by LoadTokenizer from the file it is given:
//   byte           ids 0..255 are the bytes of the text, 256 ends a document (vocab 257). Its
//                  description file ({"type":"byte",...}) is what `data prepare` writes for it.
//   bpe            a Hugging Face tokenizer.json holding a byte-level BPE model (GPT-2 and
//                  LLaMA-3 style pre-tokenizers), implemented here (data/bpe_tokenizer.h).
//   sentencepiece  a SentencePiece .model (LLaMA-2 / Mistral style) through libsentencepiece,
//                  when loom was built with it (data/sentencepiece_tokenizer.h).
// Encode gives the ids the reference library gives (`tokenizers`' encode(text,
// add_special_tokens=False), sentencepiece's EncodeAsIds): tests compare against fixtures the
// libraries wrote. Every method is const and safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace loom {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // "byte", "bpe" or "sentencepiece".
  virtual std::string_view type() const = 0;
  // Ids are 0..vocab_size()-1 (LLaMA-3: 128256, so shards need 32-bit ids above 65536).
  virtual int vocab_size() const = 0;
  // End of text: `data prepare` appends it after every document; generation stops at it.
  virtual int eot() const = 0;
  // Begin of text: `data prepare` puts it before every document; -1 when the tokenizer has none
  // of its own (byte, GPT-2: EOT alone separates documents).
  virtual int bos() const { return -1; }

  // Appends the ids of `text` to `out`, adding no BOS/EOT of its own. Special tokens written in
  // the text are treated as the reference library treats them: a tokenizer.json's added tokens
  // (e.g. "<|endoftext|>") become their ids; SentencePiece control symbols (<s>, </s>) stay
  // plain text. Never fails: bytes that are not UTF-8 are encoded as bytes (byte, bpe).
  virtual void Encode(std::string_view text, std::vector<int32_t>* out) const = 0;
  std::vector<int32_t> Encode(std::string_view text) const {
    std::vector<int32_t> out;
    Encode(text, &out);
    return out;
  }

  // The text of `ids`, byte for byte (Decode(Encode(t)) == t for byte and bpe; SentencePiece
  // normalizes). Special tokens decode to their text ("<|endoftext|>"), except in the byte
  // tokenizer, which has no text for EOT. Fails on an id outside the vocabulary, naming the
  // position and the id. The bytes may end inside a UTF-8 character when the ids do.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const = 0;
  // For showing samples: never fails; EOT shows as "<|endoftext|>" (or the tokenizer's own
  // text for it), an id out of range as U+FFFD.
  virtual std::string DecodeForDisplay(absl::Span<const int32_t> ids) const = 0;

  // The id of one token given as its text, e.g. "<|im_start|>" or "</s>"; nullopt if there is
  // no such single token.
  virtual std::optional<int32_t> TokenId(std::string_view token) const = 0;
  // Whether Encode(a + b) == Encode(a) + Encode(b) whenever `a` ends with a printable ASCII
  // character (0x21..0x7E) and '\n' and `b` starts with one: `data prepare` then cuts a large
  // document there and encodes the pieces on several threads.
  virtual bool SplitsAfterNewline() const { return false; }
};

class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int kVocabSize = 257;
  static constexpr int kEot = 256;
  // Printed in place of the EOT id by DecodeForDisplay.
  static constexpr std::string_view kEotText = "<|endoftext|>";
  // Printed in place of an id outside the vocabulary by DecodeForDisplay (U+FFFD).
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

  std::string_view type() const override { return "byte"; }
  int vocab_size() const override { return kVocabSize; }
  int eot() const override { return kEot; }

  using Tokenizer::Encode;
  void Encode(std::string_view text, std::vector<int32_t>* out) const override;
  // Appends the bytes of `text` as ids to `out` (no EOT): the form token shards hold.
  void Encode(std::string_view text, std::vector<uint16_t>* out) const;

  // Exact inverse of Encode: fails on EOT or an id >= 257, naming the position and id.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  // For showing samples: EOT becomes kEotText, ids out of range become kReplacement.
  std::string DecodeForDisplay(absl::Span<const int32_t> ids) const override;
  // A single byte, or kEotText for EOT.
  std::optional<int32_t> TokenId(std::string_view token) const override;
  bool SplitsAfterNewline() const override { return true; }

  // The description file's contents: {"type":"byte","vocab_size":257,"eot":256}.
  std::string DescriptionJson() const;
};

// Loads the tokenizer `path` holds, picked by its contents:
//   - a byte tokenizer description ({"type":"byte",...}, what `data prepare` writes);
//   - a Hugging Face tokenizer.json (a JSON object with a "model");
//   - a SentencePiece model (anything else that is not JSON, normally NAME.model);
//   - a directory: its tokenizer.json, else its tokenizer.model (a Hugging Face model folder,
//     or a `data prepare` output folder).
// Errors name the path and what is wrong: unreadable file, bad JSON, an unknown type, a
// tokenizer.json feature that is not implemented (naming it), or libsentencepiece missing from
// this build.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

}  // namespace loom
