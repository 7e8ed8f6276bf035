#include "data/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "proto/tokenizer.pb.h"
#include "runtime/files.h"

namespace loom {

void ByteTokenizer::Encode(std::string_view text, std::vector<uint16_t>* out) const {
  out->reserve(out->size() + text.size());
  for (char c : text) out->push_back(static_cast<unsigned char>(c));
}

std::vector<uint16_t> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<uint16_t> out;
  Encode(text, &out);
  return out;
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

absl::StatusOr<ByteTokenizer> LoadTokenizer(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("tokenizer description: ", text.status().message()));
  }
  data::TokenizerSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, &spec, options);
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
  return ByteTokenizer();
}

}  // namespace loom
