#include "data/bpe_pretokenize.h"

#include <algorithm>

namespace loom::bpe {
namespace {

bool InRanges(const UnicodeRange* ranges, size_t n, uint32_t cp) {
  const UnicodeRange* end = ranges + n;
  const UnicodeRange* it = std::upper_bound(
      ranges, end, cp, [](uint32_t c, const UnicodeRange& r) { return c < r.first; });
  return it != ranges && cp <= (it - 1)->last;
}

// Oniguruma's \s with Unicode: U+0009..U+000D, U+0085 and the separators Zs, Zl, Zp.
bool IsSpace(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

constexpr uint32_t kInvalid = 0xFFFFFFFF;  // a byte that does not start valid UTF-8

// Decodes the character at text[i], returning its length (1 for an invalid byte, cp = kInvalid).
int DecodeUtf8(std::string_view text, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t c = b(i);
  const size_t left = text.size() - i;
  auto cont = [&](size_t k) { return k < text.size() && (b(k) & 0xC0) == 0x80; };
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF && left >= 2 && cont(i + 1)) {
    *cp = ((c & 0x1Fu) << 6) | (b(i + 1) & 0x3Fu);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF && left >= 3 && cont(i + 1) && cont(i + 2)) {
    const uint8_t c1 = b(i + 1);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F)) {  // overlong, surrogate
      *cp = kInvalid;
      return 1;
    }
    *cp = ((c & 0x0Fu) << 12) | ((c1 & 0x3Fu) << 6) | (b(i + 2) & 0x3Fu);
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4 && left >= 4 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
    const uint8_t c1 = b(i + 1);
    if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) {  // overlong, > U+10FFFF
      *cp = kInvalid;
      return 1;
    }
    *cp =
        ((c & 0x07u) << 18) | ((c1 & 0x3Fu) << 12) | ((b(i + 2) & 0x3Fu) << 6) | (b(i + 3) & 0x3Fu);
    return 4;
  }
  *cp = kInvalid;
  return 1;
}

struct Char {
  uint32_t cp;
  uint32_t offset;  // of its first byte
  CharClass cls;
};

// The matcher over one text's characters; each Match* returns the end (a character index) of
// that alternative's match at i, or i when it does not match.
class Splitter {
 public:
  explicit Splitter(std::string_view text) {
    chars_.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      uint32_t cp;
      const int len = DecodeUtf8(text, i, &cp);
      chars_.push_back(
          {cp, static_cast<uint32_t>(i), cp == kInvalid ? CharClass::kOther : Classify(cp)});
      i += len;
    }
    n_ = chars_.size();
    chars_.push_back({0, static_cast<uint32_t>(text.size()), CharClass::kOther});  // sentinel
  }

  size_t size() const { return n_; }
  size_t offset(size_t i) const { return chars_[i].offset; }

  size_t NextGpt2(size_t i) const {
    size_t e;
    if ((e = Contraction(i, /*ignore_case=*/false)) > i) return e;
    if ((e = SpaceThen(i, CharClass::kLetter)) > i) return e;
    if ((e = SpaceThen(i, CharClass::kNumber)) > i) return e;
    if ((e = SpaceThen(i, CharClass::kOther)) > i) return e;
    return Whitespace(i);
  }

  size_t NextLlama3(size_t i) const {
    size_t e;
    if ((e = Contraction(i, /*ignore_case=*/true)) > i) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!IsCrLf(i) && !Is(i, CharClass::kLetter) && !Is(i, CharClass::kNumber) &&
        Is(i + 1, CharClass::kLetter)) {
      return Run(i + 1, CharClass::kLetter);
    }
    if (Is(i, CharClass::kLetter)) return Run(i, CharClass::kLetter);
    // \p{N}{1,3}
    if (Is(i, CharClass::kNumber)) {
      e = i;
      while (e < i + 3 && Is(e, CharClass::kNumber)) ++e;
      return e;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    if ((e = SpaceThen(i, CharClass::kOther)) > i) {
      while (IsCrLf(e)) ++e;
      return e;
    }
    // \s*[\r\n]+ : the whitespace up to and including its last \r or \n.
    const size_t run = Run(i, CharClass::kSpace);
    for (size_t m = run; m > i; --m) {
      if (IsCrLf(m - 1)) return m;
    }
    return Whitespace(i);
  }

 private:
  bool Is(size_t i, CharClass c) const { return i < n_ && chars_[i].cls == c; }
  bool IsCp(size_t i, uint32_t cp) const { return i < n_ && chars_[i].cp == cp; }
  bool IsCrLf(size_t i) const { return IsCp(i, '\r') || IsCp(i, '\n'); }
  size_t Run(size_t i, CharClass c) const {
    while (Is(i, c)) ++i;
    return i;
  }
  // One letter of a contraction: exactly `lower`, or with ignore_case also its upper case (and
  // U+017F LATIN SMALL LETTER LONG S, which case-folds to s).
  bool Letter(size_t i, char lower, bool ignore_case) const {
    if (IsCp(i, static_cast<uint32_t>(lower))) return true;
    if (!ignore_case) return false;
    return IsCp(i, static_cast<uint32_t>(lower - 'a' + 'A')) || (lower == 's' && IsCp(i, 0x17F));
  }
  // 's|'t|'re|'ve|'m|'ll|'d
  size_t Contraction(size_t i, bool ic) const {
    if (!IsCp(i, '\'')) return i;
    for (char c : {'s', 't'}) {
      if (Letter(i + 1, c, ic)) return i + 2;
    }
    if (Letter(i + 1, 'r', ic) && Letter(i + 2, 'e', ic)) return i + 3;
    if (Letter(i + 1, 'v', ic) && Letter(i + 2, 'e', ic)) return i + 3;
    if (Letter(i + 1, 'm', ic)) return i + 2;
    if (Letter(i + 1, 'l', ic) && Letter(i + 2, 'l', ic)) return i + 3;
    if (Letter(i + 1, 'd', ic)) return i + 2;
    return i;
  }
  //  ?X+ where X is a class (kOther: [^\s\p{L}\p{N}]).
  size_t SpaceThen(size_t i, CharClass c) const {
    size_t j = i;
    if (IsCp(j, ' ') && Is(j + 1, c)) ++j;
    return Is(j, c) ? Run(j, c) : i;
  }
  // \s+(?!\S)|\s+ : a whitespace run, less its last character when a non-space follows and the
  // run is longer than one (that character then goes with what follows).
  size_t Whitespace(size_t i) const {
    const size_t run = Run(i, CharClass::kSpace);
    if (run == i) return i + 1;  // unreachable: every character is L, N, \s or other
    if (run < n_ && run - i >= 2) return run - 1;
    return run;
  }

  std::vector<Char> chars_;
  size_t n_ = 0;
};

}  // namespace

CharClass Classify(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    return IsSpace(cp) ? CharClass::kSpace : CharClass::kOther;
  }
  if (IsSpace(cp)) return CharClass::kSpace;
  if (InRanges(kLetterRanges, kLetterRangesSize, cp)) return CharClass::kLetter;
  if (InRanges(kNumberRanges, kNumberRangesSize, cp)) return CharClass::kNumber;
  return CharClass::kOther;
}

void SplitPreTokens(std::string_view text, SplitRegex regex, std::vector<std::string_view>* out) {
  const Splitter s(text);
  for (size_t i = 0; i < s.size();) {
    const size_t e = regex == SplitRegex::kGpt2 ? s.NextGpt2(i) : s.NextLlama3(i);
    out->push_back(text.substr(s.offset(i), s.offset(e) - s.offset(i)));
    i = e;
  }
}

}  // namespace loom::bpe
