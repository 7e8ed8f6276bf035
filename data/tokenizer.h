// Byte-level tokenizer: ids 0..255 are the bytes of the text, 256 (kEot) ends a document, so the
// vocabulary has 257 ids. Encoding never fails and decoding an encoded text gives it back byte
// for byte. The description file (tokenizer.json, written by `loom data prepare`) records the
// type, vocab size and EOT id so a trainer can check its vocab and decode samples.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace loom {

class ByteTokenizer {
 public:
  static constexpr int kVocabSize = 257;
  static constexpr int kEot = 256;
  // Printed in place of the EOT id by DecodeForDisplay.
  static constexpr std::string_view kEotText = "<|endoftext|>";
  // Printed in place of an id outside the vocabulary by DecodeForDisplay (U+FFFD).
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

  int vocab_size() const { return kVocabSize; }
  int eot() const { return kEot; }

  // Appends the bytes of `text` as ids to `out` (no EOT).
  void Encode(std::string_view text, std::vector<uint16_t>* out) const;
  std::vector<uint16_t> Encode(std::string_view text) const;

  // Exact inverse of Encode: fails on EOT or an id >= 257, naming the position and id.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;
  // For showing samples: EOT becomes kEotText, ids out of range become kReplacement.
  std::string DecodeForDisplay(absl::Span<const int32_t> ids) const;

  // The description file's contents: {"type":"byte","vocab_size":257,"eot":256}.
  std::string DescriptionJson() const;
};

// Reads a tokenizer description (tokenizer.json) and returns the tokenizer it names. Errors name
// the path and the field: unreadable file, bad JSON, an unknown type, or a vocab_size / eot that
// does not match the type.
absl::StatusOr<ByteTokenizer> LoadTokenizer(const std::string& path);

}  // namespace loom
