#include "data/sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "data/sentencepiece_shim.h"

namespace loom {
namespace {

// The shim's functions, resolved once (data/sentencepiece_shim.h says why it is a shim).
struct Shim {
  decltype(&loom_spm_load) load = nullptr;
  decltype(&loom_spm_free) free = nullptr;
  decltype(&loom_spm_encode) encode = nullptr;
  decltype(&loom_spm_decode) decode = nullptr;
  decltype(&loom_spm_id_to_piece) id_to_piece = nullptr;
  decltype(&loom_spm_piece_to_id) piece_to_id = nullptr;
  decltype(&loom_spm_size) size = nullptr;
  decltype(&loom_spm_eos) eos = nullptr;
  decltype(&loom_spm_bos) bos = nullptr;
  decltype(&loom_spm_is_control) is_control = nullptr;
  std::string error;  // why it is not there
};

const Shim& GetShim() {
  static const Shim* shim = [] {
    auto* s = new Shim();
#if defined(LOOM_SANITIZER_BUILD) || defined(__SANITIZE_ADDRESS__) || \
    defined(__SANITIZE_THREAD__)
    // (clang defines no __SANITIZE_*__ macro: cmake/LoomSanitize.cmake defines
    // LOOM_SANITIZER_BUILD for every sanitizer build.)
    s->error =
        "SentencePiece is off in sanitizer builds (its shim is opened with RTLD_DEEPBIND, which "
        "the sanitizer runtimes refuse)";
#elif defined(LOOM_SENTENCEPIECE_SHIM)
    // $LOOM_SENTENCEPIECE_SHIM, else where the build put it, else lib/ beside the binary's
    // directory (a build tree or an install moved elsewhere).
    std::vector<std::string> paths;
    const char* env = std::getenv("LOOM_SENTENCEPIECE_SHIM");
    if (env != nullptr && *env != '\0') {
      paths.push_back(env);
    } else {
      paths.push_back(LOOM_SENTENCEPIECE_SHIM);
      std::error_code ec;
      const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!ec) {
        paths.push_back(
            (exe.parent_path().parent_path() / "lib" / "libloom_sentencepiece.so").string());
      }
    }
    void* h = nullptr;
    std::string path;
    for (const std::string& p : paths) {
      path = p;
      h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (h != nullptr) break;
      const char* e = dlerror();
      absl::StrAppend(&s->error, s->error.empty() ? "cannot load " : "; nor ", p, ": ",
                      e != nullptr ? e : "?");
    }
    if (h == nullptr) return s;
    s->error.clear();
    auto get = [&](auto* fn, const char* name) {
      *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(dlsym(h, name));
      if (*fn == nullptr && s->error.empty()) s->error = absl::StrCat(path, " lacks ", name);
    };
    get(&s->load, "loom_spm_load");
    get(&s->free, "loom_spm_free");
    get(&s->encode, "loom_spm_encode");
    get(&s->decode, "loom_spm_decode");
    get(&s->id_to_piece, "loom_spm_id_to_piece");
    get(&s->piece_to_id, "loom_spm_piece_to_id");
    get(&s->size, "loom_spm_size");
    get(&s->eos, "loom_spm_eos");
    get(&s->bos, "loom_spm_bos");
    get(&s->is_control, "loom_spm_is_control");
#else
    s->error =
        "this build of loom lacks libsentencepiece (install libsentencepiece-dev, e.g. with "
        "scripts/setup.sh, and rebuild)";
#endif
    return s;
  }();
  return *shim;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const Shim& shim, void* processor)
      : shim_(shim),
        processor_(processor),
        size_(shim.size(processor)),
        eos_(shim.eos(processor)),
        bos_(shim.bos(processor)) {}
  ~SentencePieceTokenizer() override { shim_.free(processor_); }

  std::string_view type() const override { return "sentencepiece"; }
  int vocab_size() const override { return size_; }
  int eot() const override { return eos_; }
  int bos() const override { return bos_; }

  void Encode(std::string_view text, std::vector<int32_t>* out) const override {
    if (!EncodeInto(text, out)) {
      // The library refuses some malformed input; give it the text with each byte that is not
      // UTF-8 as U+FFFD, so Encode never fails.
      EncodeInto(ReplaceInvalidUtf8(text), out);
    }
  }

  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= size_) {
        return absl::InvalidArgumentError(absl::StrCat("sentencepiece tokenizer: cannot decode id ",
                                                       ids[i], " at position ", i,
                                                       " (the vocabulary has ", size_, " pieces)"));
      }
    }
    std::string out;
    if (!DecodeRun(std::vector<int>(ids.begin(), ids.end()), &out)) {
      return absl::InvalidArgumentError("sentencepiece tokenizer: the library could not decode");
    }
    return out;
  }

  std::string DecodeForDisplay(absl::Span<const int32_t> ids) const override {
    // Runs of ordinary ids decode together (so spaces come out right); control ids (<s>, </s>)
    // show as their pieces, ids out of range as U+FFFD.
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      if (!run.empty()) DecodeRun(run, &out);
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= size_) {
        flush();
        out += ByteTokenizer::kReplacement;
      } else if (shim_.is_control(processor_, id)) {
        flush();
        out += Piece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  std::optional<int32_t> TokenId(std::string_view token) const override {
    const int id = shim_.piece_to_id(processor_, token.data(), token.size());
    if (id < 0 || id >= size_ || Piece(id) != token) return std::nullopt;
    return id;
  }

 private:
  bool EncodeInto(std::string_view text, std::vector<int32_t>* out) const {
    std::vector<int> ids(text.size() + 16);
    long n = shim_.encode(processor_, text.data(), text.size(), ids.data(), ids.size());
    if (n > static_cast<long>(ids.size())) {
      ids.resize(n);
      n = shim_.encode(processor_, text.data(), text.size(), ids.data(), ids.size());
    }
    if (n < 0) return false;
    out->insert(out->end(), ids.begin(), ids.begin() + n);
    return true;
  }
  // Appends the text of `ids` to *out.
  bool DecodeRun(const std::vector<int>& ids, std::string* out) const {
    std::string buf(ids.size() * 8 + 16, '\0');
    long n = shim_.decode(processor_, ids.data(), ids.size(), buf.data(), buf.size());
    if (n > static_cast<long>(buf.size())) {
      buf.resize(n);
      n = shim_.decode(processor_, ids.data(), ids.size(), buf.data(), buf.size());
    }
    if (n < 0) return false;
    out->append(buf.data(), n);
    return true;
  }
  std::string Piece(int id) const {
    std::string buf(64, '\0');
    long n = shim_.id_to_piece(processor_, id, buf.data(), buf.size());
    if (n > static_cast<long>(buf.size())) {
      buf.resize(n);
      n = shim_.id_to_piece(processor_, id, buf.data(), buf.size());
    }
    buf.resize(n);
    return buf;
  }
  static std::string ReplaceInvalidUtf8(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
      const auto c = static_cast<uint8_t>(text[i]);
      const size_t len = c < 0x80         ? 1
                         : (c >> 5) == 6  ? 2
                         : (c >> 4) == 14 ? 3
                         : (c >> 3) == 30 ? 4
                                          : 0;
      bool ok = len > 0 && i + len <= text.size();
      for (size_t k = 1; ok && k < len; ++k)
        ok = (static_cast<uint8_t>(text[i + k]) & 0xC0) == 0x80;
      if (ok) {
        out.append(text.data() + i, len);
        i += len;
      } else {
        out += ByteTokenizer::kReplacement;
        ++i;
      }
    }
    return out;
  }

  const Shim& shim_;
  void* processor_;
  int size_, eos_, bos_;
};

}  // namespace

bool SentencePieceAvailable() { return GetShim().error.empty(); }

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path,
                                                                      const std::string& bytes) {
  const Shim& shim = GetShim();
  if (!shim.error.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer ", path, ": SentencePiece models need libsentencepiece: ", shim.error));
  }
  char err[512] = "";
  void* processor = shim.load(bytes.data(), bytes.size(), err, sizeof(err));
  if (processor == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", path, ": not a SentencePiece model (", err,
        "); a tokenizer is a byte description or a tokenizer.json (JSON) or a .model"));
  }
  auto tok = std::make_unique<SentencePieceTokenizer>(shim, processor);
  if (tok->eot() < 0 || tok->eot() >= tok->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", path, ": the SentencePiece model has no end-of-sentence piece (eos_id ",
        tok->eot(), "), which data prepare puts after every document"));
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace loom
