#include "data/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "data/bpe_tokenizer.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/tokenizer_json.h"
#include "google/protobuf/util/json_util.h"
#include "proto/tokenizer.pb.h"
#include "runtime/files.h"

namespace loom {

void ByteTokenizer::Encode(std::string_view text, std::vector<uint16_t>* out) const {
  out->reserve(out->size() + text.size());
  for (char c : text) out->push_back(static_cast<unsigned char>(c));
}

void ByteTokenizer::Encode(std::string_view text, std::vector<int32_t>* out) const {
  out->reserve(out->size() + text.size());
  for (char c : text) out->push_back(static_cast<unsigned char>(c));
}

std::optional<int32_t> ByteTokenizer::TokenId(std::string_view token) const {
  if (token.size() == 1) return static_cast<unsigned char>(token[0]);
  if (token == kEotText) return kEot;
  return std::nullopt;
}

absl::StatusOr<std::string> ByteTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id > 255) {
      return absl::InvalidArgumentError(absl::StrCat(
          "byte tokenizer: cannot decode id ", id, " at position ", i,
          id == kEot ? " (end-of-text has no bytes)" : " (valid byte ids are 0..255)"));
    }
    out.push_back(static_cast<char>(id));
  }
  return out;
}

std::string ByteTokenizer::DecodeForDisplay(absl::Span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= 0 && id <= 255) {
      out.push_back(static_cast<char>(id));
    } else if (id == kEot) {
      out.append(kEotText);
    } else {
      out.append(kReplacement);
    }
  }
  return out;
}

std::string ByteTokenizer::DescriptionJson() const {
  return absl::StrCat("{\"type\":\"byte\",\"vocab_size\":", kVocabSize, ",\"eot\":", kEot, "}\n");
}

namespace {

// The byte tokenizer's description file (proto3 JSON of data::TokenizerSpec).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadByteDescription(const std::string& path,
                                                               const std::string& text) {
  data::TokenizerSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto parsed = google::protobuf::util::JsonStringToMessage(text, &spec, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer description ", path,
                     ": not a valid description: ", std::string(parsed.message())));
  }
  if (spec.type() != "byte") {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer description ", path, ": type \"",
                                                   spec.type(),
                                                   "\" is not supported (only \"byte\")"));
  }
  if (spec.vocab_size() != ByteTokenizer::kVocabSize) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer description ", path, ": vocab_size ",
                                                   spec.vocab_size(), " but a byte tokenizer has ",
                                                   ByteTokenizer::kVocabSize));
  }
  if (spec.eot() != ByteTokenizer::kEot) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer description ", path, ": eot ",
                                                   spec.eot(), " but a byte tokenizer uses ",
                                                   ByteTokenizer::kEot));
  }
  return std::make_unique<ByteTokenizer>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
      const std::string inner = (std::filesystem::path(path) / name).string();
      if (std::filesystem::exists(inner, ec)) return LoadTokenizer(inner);
    }
    return absl::NotFoundError(absl::StrCat("tokenizer: directory ", path,
                                            " holds neither tokenizer.json nor tokenizer.model"));
  }
  auto text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("tokenizer: ", text.status().message()));
  }
  const size_t first = text->find_first_not_of(" \t\r\n");
  if (first == std::string::npos || (*text)[first] != '{') {
    // Not JSON: a SentencePiece model is a serialized protocol buffer.
    return LoadSentencePieceTokenizer(path, *text);
  }
  // A Hugging Face tokenizer.json has a "model"; anything else is read as a byte description,
  // whose parser names what is wrong.
  auto root = json::Parse(*text);
  if (root.ok() && root->Find("model") != nullptr) return LoadBpeTokenizer(path, *root);
  return LoadByteDescription(path, *text);
}

}  // namespace loom
