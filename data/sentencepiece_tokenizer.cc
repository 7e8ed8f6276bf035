#include "data/sentencepiece_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "data/sentencepiece_lib.h"

namespace loom {

#ifdef LOOM_WITH_SENTENCEPIECE

namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  std::string_view type() const override { return "sentencepiece"; }
  int vocab_size() const override { return sp_.Size(); }
  int eot() const override { return sp_.EosId(); }
  int bos() const override { return sp_.BosId(); }

  void Encode(std::string_view text, std::vector<int32_t>* out) const override {
    std::vector<int> ids;
    if (!sp_.Encode(text, &ids)) {
      // The library refuses some malformed input; fall back to its view of the text with each
      // byte that is not UTF-8 as U+FFFD, so Encode never fails.
      ids.clear();
      (void)sp_.Encode(ReplaceInvalidUtf8(text), &ids);
    }
    out->insert(out->end(), ids.begin(), ids.end());
  }

  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override {
    std::vector<int> v(ids.begin(), ids.end());
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] < 0 || v[i] >= vocab_size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("sentencepiece tokenizer: cannot decode id ", v[i], " at position ", i,
                         " (the vocabulary has ", vocab_size(), " pieces)"));
      }
    }
    std::string out, error;
    if (!sp_.Decode(v, &out, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("sentencepiece tokenizer: decode failed: ", error));
    }
    return out;
  }

  std::string DecodeForDisplay(absl::Span<const int32_t> ids) const override {
    // Runs of ordinary ids decode together (so spaces come out right); control ids (<s>, </s>)
    // show as their pieces, ids out of range as U+FFFD.
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      std::string text;
      std::string error;
      if (!run.empty() && sp_.Decode(run, &text, &error)) out += text;
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) {
        flush();
        out += ByteTokenizer::kReplacement;
      } else if (sp_.IsControl(id)) {
        flush();
        out += sp_.IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  std::optional<int32_t> TokenId(std::string_view token) const override {
    const int id = sp_.PieceToId(token);
    if (id < 0 || sp_.IdToPiece(id) != token) return std::nullopt;
    return id;
  }

  spm::Processor sp_;

 private:
  static std::string ReplaceInvalidUtf8(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
      const auto c = static_cast<uint8_t>(text[i]);
      int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      bool ok = len > 0 && i + len <= text.size();
      for (int k = 1; ok && k < len; ++k) ok = (static_cast<uint8_t>(text[i + k]) & 0xC0) == 0x80;
      if (ok) {
        out.append(text.substr(i, len));
        i += len;
      } else {
        out += ByteTokenizer::kReplacement;
        ++i;
      }
    }
    return out;
  }
};

}  // namespace

bool SentencePieceAvailable() { return true; }

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path,
                                                                      const std::string& bytes) {
  auto tok = std::make_unique<SentencePieceTokenizer>();
  std::string error;
  if (!tok->sp_.Load(bytes, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", path, ": not a SentencePiece model (", error,
        "); a tokenizer is a byte description or a tokenizer.json (JSON) or a .model"));
  }
  if (tok->sp_.EosId() < 0 || tok->sp_.EosId() >= tok->sp_.Size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", path, ": the SentencePiece model has no end-of-sentence piece (eos_id ",
        tok->sp_.EosId(), "), which data prepare puts after every document"));
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

#else  // !LOOM_WITH_SENTENCEPIECE

bool SentencePieceAvailable() { return false; }

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path,
                                                                      const std::string&) {
  return absl::UnimplementedError(absl::StrCat(
      "tokenizer ", path,
      ": SentencePiece models need libsentencepiece, which this build of loom lacks (install "
      "libsentencepiece-dev, e.g. with scripts/setup.sh, and rebuild)"));
}

#endif  // LOOM_WITH_SENTENCEPIECE

}  // namespace loom
