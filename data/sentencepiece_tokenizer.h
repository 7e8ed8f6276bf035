// SentencePiece models (LLaMA-2 / Mistral tokenizer.model) through Debian's libsentencepiece:
// ids are the library's own EncodeAsIds, vocab_size its piece count, end and begin of text
// its eos_id / bos_id (a model without eos is refused). Without the library in the build
// (scripts/setup.sh installs libsentencepiece-dev; CMake finds it with pkg-config), loading
// refuses with a message that says so.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace loom {

// Whether this build links libsentencepiece.
bool SentencePieceAvailable();

// `bytes` is the serialized model read from `path` (named in messages).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path,
                                                                      const std::string& bytes);

}  // namespace loom
