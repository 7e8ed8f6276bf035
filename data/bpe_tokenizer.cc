#include "data/bpe_tokenizer.h"

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "data/bpe_pretokenize.h"
#include "runtime/status.h"

namespace loom {
namespace {

// Ids above this are refused: vocabularies are far smaller (the embedding has a row per id).
constexpr int64_t kMaxId = (1 << 30) - 1;

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100 + n.
struct ByteMap {
  std::array<uint32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};  // by code point; -1 where no byte maps
  ByteMap() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_char[b] = printable ? b : 256 + n++;
      to_byte[to_char[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& Bytes() {
  static const ByteMap* map = new ByteMap();
  return *map;
}

// The bytes a byte-level token string stands for, or nullopt when one of its characters is
// not in the byte map (such a token decodes to its own UTF-8, as the ByteLevel decoder does).
std::optional<std::string> TokenBytes(std::string_view token) {
  std::string out;
  for (size_t i = 0; i < token.size();) {
    const auto c = static_cast<uint8_t>(token[i]);
    uint32_t cp;
    int len;
    if (c < 0x80) {
      cp = c, len = 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < token.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<uint8_t>(token[i + 1]) & 0x3Fu), len = 2;
    } else {
      return std::nullopt;  // byte-map characters are all below U+0800
    }
    if (cp >= Bytes().to_byte.size() || Bytes().to_byte[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(Bytes().to_byte[cp]));
    i += len;
  }
  return out;
}

// Debian's Abseil has its own string_view class: maps and StrCat take it, not std's.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsWhitespace(uint32_t cp) { return bpe::Classify(cp) == bpe::CharClass::kSpace; }

struct AddedToken {
  std::string content;
  int32_t id;
  bool lstrip, rstrip, normalized;
};

// A small, thread-safe cache of word -> ids, split into shards to keep lock waits short.
class WordCache {
 public:
  bool Get(std::string_view word, std::vector<int32_t>* out) const {
    Shard& s = shards_[Index(word)];
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.map.find(AV(word));
    if (it == s.map.end()) return false;
    out->insert(out->end(), it->second.begin(), it->second.end());
    return true;
  }
  void Put(std::string_view word, const int32_t* ids, size_t n) const {
    Shard& s = shards_[Index(word)];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.map.size() >= kPerShard) s.map.clear();
    s.map.emplace(std::string(word), std::vector<int32_t>(ids, ids + n));
  }

 private:
  static constexpr size_t kShards = 64, kPerShard = 4096;
  struct Shard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map;
  };
  static size_t Index(std::string_view w) { return std::hash<std::string_view>()(w) % kShards; }
  mutable std::array<Shard, kShards> shards_;
};

class BpeTokenizer : public Tokenizer {
 public:
  std::string_view type() const override { return "bpe"; }
  int vocab_size() const override { return vocab_size_; }
  int eot() const override { return eot_; }
  int bos() const override { return bos_; }

  void Encode(std::string_view text, std::vector<int32_t>* out) const override {
    // Added tokens first (normalized false, then normalized true), then pre-tokens.
    SplitAdded(
        text, /*normalized=*/false,
        [&](std::string_view piece) {
          SplitAdded(
              piece, /*normalized=*/true, [&](std::string_view plain) { EncodePlain(plain, out); },
              out);
        },
        out);
  }

  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!Known(ids[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("bpe tokenizer: cannot decode id ", ids[i], " at position ", i,
                         " (no token has it; the vocabulary size is ", vocab_size_, ")"));
      }
      out += id_text_.find(ids[i])->second;
    }
    return out;
  }

  std::string DecodeForDisplay(absl::Span<const int32_t> ids) const override {
    std::string out;
    for (int32_t id : ids) {
      auto it = id_text_.find(id);
      out += it != id_text_.end() ? it->second : std::string(ByteTokenizer::kReplacement);
    }
    return out;
  }

  // Pre-tokens never span "x\nY" (x, Y printable ASCII): the regexes end a piece after such a
  // newline, at the end of text as inside it. Only a prefix space, an added token holding a
  // newline or one that swallows whitespace to its left could tell the cut.
  bool SplitsAfterNewline() const override {
    if (add_prefix_space_) return false;
    for (const AddedToken& a : added_) {
      if (a.lstrip || a.content.find('\n') != std::string::npos) return false;
    }
    return true;
  }

  std::optional<int32_t> TokenId(std::string_view token) const override {
    for (const AddedToken& a : added_) {
      if (a.content == token) return a.id;
    }
    auto it = word_id_.find(AV(token));
    if (it != word_id_.end()) return it->second;
    return std::nullopt;
  }

 private:
  friend absl::StatusOr<std::unique_ptr<Tokenizer>> LoadBpe(const std::string&, const json::Value&);

  bool Known(int32_t id) const { return id_text_.contains(id); }

  // Calls `plain` for the text between this pass's added tokens and appends their ids.
  template <typename F>
  void SplitAdded(std::string_view text, bool normalized, F&& plain,
                  std::vector<int32_t>* out) const {
    const auto& by_first = by_first_[normalized ? 1 : 0];
    if (by_first.empty()) {
      if (!text.empty()) plain(text);
      return;
    }
    size_t done = 0;  // end of the last match
    for (size_t p = 0; p < text.size();) {
      const AddedToken* best = nullptr;
      auto it = by_first.find(static_cast<uint8_t>(text[p]));
      if (it != by_first.end()) {
        for (const AddedToken* a : it->second) {  // longest first
          if (text.compare(p, a->content.size(), a->content) == 0) {
            best = a;
            break;
          }
        }
      }
      if (best == nullptr) {
        ++p;
        continue;
      }
      size_t start = p, stop = p + best->content.size();
      if (best->lstrip) {
        while (start > done) {
          size_t q = start - 1;  // back to the first byte of the previous character
          while (q > done && (static_cast<uint8_t>(text[q]) & 0xC0) == 0x80) --q;
          uint32_t cp;
          if (!DecodeOne(text, q, &cp) || !IsWhitespace(cp)) break;
          start = q;
        }
      }
      if (best->rstrip) {
        uint32_t cp;
        int len;
        while (stop < text.size() && (len = DecodeOne(text, stop, &cp)) > 0 && IsWhitespace(cp)) {
          stop += len;
        }
      }
      if (start > done) plain(text.substr(done, start - done));
      out->push_back(best->id);
      done = p = stop;
    }
    if (done < text.size()) plain(text.substr(done));
  }

  // The length of the UTF-8 character at text[i] and its code point, or 0 when the bytes there
  // are not one (only whitespace is asked about, so overlong forms need no care).
  static int DecodeOne(std::string_view text, size_t i, uint32_t* cp) {
    const std::string_view window = text.substr(i, 4);
    const auto c = static_cast<uint8_t>(window[0]);
    const int len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || static_cast<size_t>(len) > window.size()) return 0;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<uint8_t>(window[k]);
      if ((b & 0xC0) != 0x80) return 0;
      v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return len;
  }

  void EncodePlain(std::string_view text, std::vector<int32_t>* out) const {
    std::string prefixed;
    if (add_prefix_space_ && text.front() != ' ') {
      prefixed = absl::StrCat(" ", AV(text));
      text = prefixed;
    }
    std::vector<std::string_view> words;
    bpe::SplitPreTokens(text, regex_, &words);
    for (std::string_view w : words) EncodeWord(w, out);
  }

  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
    if (ignore_merges_) {
      auto it = word_id_.find(AV(word));
      if (it != word_id_.end()) {
        out->push_back(it->second);
        return;
      }
    }
    const bool cacheable = word.size() < 256;
    if (cacheable && cache_.Get(word, out)) return;
    struct Symbol {
      int32_t id, prev, next;
    };
    std::vector<Symbol> syms;
    syms.reserve(word.size());
    for (char ch : word) {
      int32_t id = byte_id_[static_cast<uint8_t>(ch)];
      if (id < 0) id = unk_;
      if (id < 0) continue;  // no token for this byte and no unknown token: dropped, as HF does
      const auto n = static_cast<int32_t>(syms.size());
      syms.push_back({id, n - 1, n + 1});
    }
    if (!syms.empty()) syms.back().next = -1;
    struct Merge {
      int32_t rank, pos, id;
      bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
    auto push = [&](int32_t pos) {
      const int32_t next = syms[pos].next;
      if (next < 0) return;
      auto it = merges_.find(Key(syms[pos].id, syms[next].id));
      if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
    std::vector<bool> gone(syms.size(), false);
    while (!queue.empty()) {
      const Merge m = queue.top();
      queue.pop();
      if (gone[m.pos] || syms[m.pos].next < 0) continue;
      const int32_t next = syms[m.pos].next;
      auto it = merges_.find(Key(syms[m.pos].id, syms[next].id));
      if (it == merges_.end() || it->second.first != m.rank) continue;  // stale
      syms[m.pos].id = m.id;
      syms[m.pos].next = syms[next].next;
      if (syms[next].next >= 0) syms[syms[next].next].prev = m.pos;
      gone[next] = true;
      if (syms[m.pos].prev >= 0) push(syms[m.pos].prev);
      push(m.pos);
    }
    const size_t first = out->size();
    for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) out->push_back(syms[i].id);
    if (cacheable) cache_.Put(word, out->data() + first, out->size() - first);
  }

  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  bpe::SplitRegex regex_ = bpe::SplitRegex::kGpt2;
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  int vocab_size_ = 0, eot_ = -1, bos_ = -1;
  int32_t unk_ = -1;
  std::array<int32_t, 256> byte_id_{};
  absl::flat_hash_map<std::string, int32_t> word_id_;                  // token bytes -> id
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // pair -> (rank, id)
  // What each id decodes to; sparse, since ids may have gaps (LLaMA-3's specials at 128000).
  absl::flat_hash_map<int32_t, std::string> id_text_;
  std::vector<AddedToken> added_;
  // Added tokens by first byte, longest first; [0] normalized false, [1] normalized true.
  std::array<absl::flat_hash_map<uint8_t, std::vector<const AddedToken*>>, 2> by_first_;
  WordCache cache_;
};

// "tokenizer.json PATH: FIELD ..." errors.
absl::Status Bad(const std::string& path, std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer.json ", path, ": ", AV(field), " ", AV(what)));
}

bool IsFalse(const json::Value* v) {
  return v == nullptr || v->is_null() || (v->is_bool() && !v->boolean);
}
bool IsEmpty(const json::Value* v) {
  return v == nullptr || v->is_null() || (v->is_string() && v->string.empty());
}
std::string TypeOf(const json::Value* v) {
  const json::Value* t = v == nullptr ? nullptr : v->Find("type");
  return t != nullptr && t->is_string() ? t->string : std::string();
}

// A ByteLevel pre-tokenizer: sets add_prefix_space; `use_regex` says whether it must split.
absl::Status ReadByteLevel(const std::string& path, std::string_view field, const json::Value& v,
                           bool want_regex, bool* add_prefix_space) {
  const json::Value* regex = v.Find("use_regex");
  const bool use_regex = regex == nullptr || !regex->is_bool() || regex->boolean;  // default true
  if (use_regex != want_regex) {
    return Bad(path, field,
               want_regex ? "is a ByteLevel without regex on its own: the text would not be split "
                            "into words (not supported)"
                          : "is a ByteLevel with use_regex after a Split: two regex splits are not "
                            "supported");
  }
  const json::Value* aps = v.Find("add_prefix_space");
  *add_prefix_space = aps != nullptr && aps->is_bool() && aps->boolean;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadBpe(const std::string& path,
                                                   const json::Value& root) {
  auto tok = std::make_unique<BpeTokenizer>();
  if (!root.is_object()) return Bad(path, "the file", "is not a JSON object");

  // normalizer: none.
  const json::Value* normalizer = root.Find("normalizer");
  if (normalizer != nullptr && !normalizer->is_null()) {
    return Bad(path, "normalizer",
               absl::StrCat("\"", TypeOf(normalizer),
                            "\" is not supported (only null, as in GPT-2 and "
                            "LLaMA-3)"));
  }

  // pre_tokenizer: ByteLevel with its regex, or Sequence[Split(regex), ByteLevel(no regex)].
  const json::Value* pre = root.Find("pre_tokenizer");
  const std::string pre_type = TypeOf(pre);
  if (pre_type == "ByteLevel") {
    tok->regex_ = bpe::SplitRegex::kGpt2;
    LOOM_RETURN_IF_ERROR(ReadByteLevel(path, "pre_tokenizer", *pre, true, &tok->add_prefix_space_));
  } else if (pre_type == "Sequence") {
    const json::Value* list = pre->Find("pretokenizers");
    if (list == nullptr || !list->is_array() || list->array.size() != 2 ||
        TypeOf(&list->array[0]) != "Split" || TypeOf(&list->array[1]) != "ByteLevel") {
      return Bad(path, "pre_tokenizer",
                 "is a Sequence other than [Split(regex), ByteLevel] (not supported)");
    }
    const json::Value& split = list->array[0];
    const json::Value* pattern = split.Find("pattern");
    const json::Value* regex = pattern == nullptr ? nullptr : pattern->Find("Regex");
    if (regex == nullptr || !regex->is_string()) {
      return Bad(path, "pre_tokenizer.pretokenizers[0].pattern", "is not a {\"Regex\": ...}");
    }
    if (regex->string == bpe::kGpt2Regex) {
      tok->regex_ = bpe::SplitRegex::kGpt2;
    } else if (regex->string == bpe::kLlama3Regex) {
      tok->regex_ = bpe::SplitRegex::kLlama3;
    } else {
      return Bad(path, "pre_tokenizer.pretokenizers[0].pattern.Regex",
                 absl::StrCat("\"", regex->string,
                              "\" is not one of the regexes implemented (GPT-2's and LLaMA-3's)"));
    }
    const json::Value* behavior = split.Find("behavior");
    if (behavior == nullptr || !behavior->is_string() || behavior->string != "Isolated" ||
        !IsFalse(split.Find("invert"))) {
      return Bad(path, "pre_tokenizer.pretokenizers[0]",
                 "must split with behavior \"Isolated\" and invert false");
    }
    LOOM_RETURN_IF_ERROR(ReadByteLevel(path, "pre_tokenizer.pretokenizers[1]", list->array[1],
                                       false, &tok->add_prefix_space_));
  } else {
    return Bad(path, "pre_tokenizer",
               absl::StrCat(pre_type.empty() ? std::string("(none)") : "\"" + pre_type + "\"",
                            " is not supported: only byte-level BPE (ByteLevel, or a Split on the "
                            "GPT-2 / LLaMA-3 regex then ByteLevel)"));
  }

  const json::Value* decoder = root.Find("decoder");
  if (decoder != nullptr && !decoder->is_null() && TypeOf(decoder) != "ByteLevel") {
    return Bad(path, "decoder",
               absl::StrCat("\"", TypeOf(decoder), "\" is not supported (only ByteLevel)"));
  }

  // model: BPE.
  const json::Value* model = root.Find("model");
  if (model == nullptr || !model->is_object()) return Bad(path, "model", "is missing");
  const std::string model_type = TypeOf(model);
  if (!model_type.empty() && model_type != "BPE") {
    return Bad(path, "model.type",
               absl::StrCat("\"", model_type, "\" is not supported (only BPE)"));
  }
  for (const char* f : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::Value* v = model->Find(f);
    if (!IsEmpty(v) && !(v->is_number() && v->number == 0)) {
      return Bad(path, absl::StrCat("model.", f), "is set (not supported for byte-level BPE)");
    }
  }
  for (const char* f : {"byte_fallback", "fuse_unk"}) {
    if (!IsFalse(model->Find(f))) {
      return Bad(path, absl::StrCat("model.", f), "is true (not supported for byte-level BPE)");
    }
  }
  tok->ignore_merges_ = !IsFalse(model->Find("ignore_merges"));

  const json::Value* vocab = model->Find("vocab");
  if (vocab == nullptr || !vocab->is_object() || vocab->object.empty()) {
    return Bad(path, "model.vocab", "is missing or empty");
  }
  int64_t max_id = -1;
  absl::flat_hash_map<std::string, int32_t> by_token;  // as written (byte-map characters)
  by_token.reserve(vocab->object.size());
  std::vector<std::pair<int32_t, const std::string*>> entries;
  for (const auto& [token, id] : vocab->object) {
    if (!id.is_number() || id.number < 0 || id.number > kMaxId ||
        id.number != static_cast<int64_t>(id.number)) {
      return Bad(path, absl::StrCat("model.vocab[\"", token, "\"]"),
                 absl::StrCat("is not an id in 0..", kMaxId));
    }
    const auto i = static_cast<int32_t>(id.number);
    if (!by_token.emplace(token, i).second) {
      return Bad(path, absl::StrCat("model.vocab[\"", token, "\"]"), "is given twice");
    }
    entries.emplace_back(i, &token);
    max_id = std::max<int64_t>(max_id, i);
  }

  // added_tokens.
  const json::Value* added = root.Find("added_tokens");
  if (added != nullptr && !added->is_null() && !added->is_array()) {
    return Bad(path, "added_tokens", "is not an array");
  }
  if (added != nullptr && added->is_array()) {
    for (size_t k = 0; k < added->array.size(); ++k) {
      const json::Value& a = added->array[k];
      const std::string field = absl::StrCat("added_tokens[", k, "]");
      const json::Value* id = a.Find("id");
      const json::Value* content = a.Find("content");
      if (id == nullptr || !id->is_number() || id->number < 0 || id->number > kMaxId ||
          id->number != static_cast<int64_t>(id->number)) {
        return Bad(path, field + ".id", absl::StrCat("is not an id in 0..", kMaxId));
      }
      if (content == nullptr || !content->is_string() || content->string.empty()) {
        return Bad(path, field + ".content", "is not a non-empty string");
      }
      if (!IsFalse(a.Find("single_word"))) {
        return Bad(path, field + ".single_word", "is true (not supported)");
      }
      const json::Value* normalized = a.Find("normalized");
      const json::Value* special = a.Find("special");
      // The library's default: special tokens are not normalized, the others are.
      const bool is_special = special != nullptr && special->is_bool() && special->boolean;
      tok->added_.push_back(
          {content->string, static_cast<int32_t>(id->number), !IsFalse(a.Find("lstrip")),
           !IsFalse(a.Find("rstrip")),
           normalized != nullptr && normalized->is_bool() ? normalized->boolean : !is_special});
      max_id = std::max<int64_t>(max_id, tok->added_.back().id);
    }
  }
  tok->vocab_size_ = static_cast<int>(max_id + 1);
  tok->id_text_.reserve(entries.size() + tok->added_.size());
  for (const auto& [id, token] : entries) {
    std::optional<std::string> bytes = TokenBytes(*token);
    if (bytes.has_value()) tok->word_id_.emplace(*bytes, id);
    tok->id_text_[id] = bytes.has_value() ? *bytes : *token;
  }
  for (const AddedToken& a : tok->added_) {  // an added token's text wins, as in the library
    std::optional<std::string> bytes = TokenBytes(a.content);
    tok->id_text_[a.id] = bytes.has_value() ? *bytes : a.content;
  }
  for (const AddedToken& a : tok->added_) {
    tok->by_first_[a.normalized ? 1 : 0][static_cast<uint8_t>(a.content[0])].push_back(&a);
  }
  for (auto& pass : tok->by_first_) {
    for (auto& [first, list] : pass) {
      std::stable_sort(list.begin(), list.end(), [](const AddedToken* x, const AddedToken* y) {
        return x->content.size() > y->content.size();
      });
    }
  }
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    const uint32_t cp = Bytes().to_char[b];
    if (cp < 0x80) {
      ch.push_back(static_cast<char>(cp));
    } else {
      ch.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      ch.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    auto it = by_token.find(ch);
    tok->byte_id_[b] = it == by_token.end() ? -1 : it->second;
  }
  const json::Value* unk = model->Find("unk_token");
  if (!IsEmpty(unk)) {
    auto it = unk->is_string() ? by_token.find(unk->string) : by_token.end();
    if (it == by_token.end()) return Bad(path, "model.unk_token", "is not in model.vocab");
    tok->unk_ = it->second;
  }

  // merges: "a b" or ["a", "b"]; rank = position (a later repeat of a pair wins, as in HF).
  const json::Value* merges = model->Find("merges");
  if (merges == nullptr || !merges->is_array()) return Bad(path, "model.merges", "is missing");
  tok->merges_.reserve(merges->array.size());
  for (size_t r = 0; r < merges->array.size(); ++r) {
    const json::Value& m = merges->array[r];
    std::string a, b;
    if (m.is_string()) {
      const size_t space = m.string.find(' ');
      if (space == std::string::npos || m.string.find(' ', space + 1) != std::string::npos) {
        return Bad(path, absl::StrCat("model.merges[", r, "]"),
                   absl::StrCat("\"", m.string, "\" is not two tokens separated by one space"));
      }
      a = m.string.substr(0, space);
      b = m.string.substr(space + 1);
    } else if (m.is_array() && m.array.size() == 2 && m.array[0].is_string() &&
               m.array[1].is_string()) {
      a = m.array[0].string;
      b = m.array[1].string;
    } else {
      return Bad(path, absl::StrCat("model.merges[", r, "]"),
                 "is neither \"a b\" nor [\"a\", \"b\"]");
    }
    auto ia = by_token.find(a), ib = by_token.find(b), iab = by_token.find(a + b);
    if (ia == by_token.end() || ib == by_token.end() || iab == by_token.end()) {
      return Bad(path, absl::StrCat("model.merges[", r, "]"),
                 absl::StrCat("(\"", a, "\", \"", b, "\") names a token not in model.vocab"));
    }
    tok->merges_[BpeTokenizer::Key(ia->second, ib->second)] = {static_cast<int32_t>(r),
                                                               iab->second};
  }

  // End and begin of text.
  for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>"}) {
    if (auto id = tok->TokenId(name)) {
      tok->eot_ = *id;
      break;
    }
  }
  if (tok->eot_ < 0) {
    return Bad(path, "added_tokens",
               "hold no end-of-text token (looked for <|endoftext|>, <|end_of_text|>, </s>, "
               "<eos>, <|eos|>)");
  }
  for (const char* name : {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"}) {
    if (auto id = tok->TokenId(name); id && *id != tok->eot_) {
      tok->bos_ = *id;
      break;
    }
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadBpeTokenizer(const std::string& path,
                                                            const json::Value& root) {
  return LoadBpe(path, root);
}

}  // namespace loom
