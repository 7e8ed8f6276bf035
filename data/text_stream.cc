#include "data/text_stream.h"

#include <algorithm>

namespace loom {
namespace {

// The length of the longest prefix of bytes[i..] that is a valid UTF-8 sequence or the start
// of one (1..4), 0 when bytes[i] begins none; *complete when that prefix is a whole character.
// The ranges of the second byte follow the Unicode standard's Table 3-7 (no overlong forms, no
// surrogates, nothing above U+10FFFF).
size_t ValidPrefix(std::string_view s, size_t i, bool* complete) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  *complete = false;
  if (c < 0x80) {
    *complete = true;
    return 1;
  }
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  size_t n = 1;
  for (; n < need && i + n < s.size(); ++n) {
    const uint8_t x = b(i + n);
    const bool ok = n == 1 ? (x >= lo && x <= hi) : (x >= 0x80 && x <= 0xBF);
    if (!ok) return n;
  }
  *complete = n == need;
  return n;
}

}  // namespace

std::string LossyUtf8(std::string_view s, bool hold_tail, size_t* used) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    bool complete;
    const size_t n = ValidPrefix(s, i, &complete);
    if (complete) {
      out.append(s.substr(i, n));
      i += n;
    } else if (n > 0 && i + n == s.size() && hold_tail) {
      break;  // an unfinished character at the end: wait for its other bytes
    } else {
      out.append(ByteTokenizer::kReplacement);
      i += std::max<size_t>(n, 1);
    }
  }
  *used = i;
  return out;
}

TextStream::TextStream(const Tokenizer& tokenizer, absl::Span<const int32_t> prompt)
    : tok_(tokenizer),
      ids_(prompt.begin(), prompt.end()),
      prompt_bytes_(tok_.DecodeForDisplay(ids_).size()) {}

std::string TextStream::Push(int32_t id) {
  ids_.push_back(id);
  const std::string all = tok_.DecodeForDisplay(ids_);
  std::string text = all.size() >= prompt_bytes_ ? all.substr(prompt_bytes_) : std::string();
  // Text already handed out cannot be taken back: should decoding the longer sequence change
  // it (a tokenizer whose text of earlier ids depends on later ones), the stream goes on after
  // what it handed out.
  if (text.compare(0, done_, text_, 0, done_) != 0) {
    text = text_.substr(0, done_) + (text.size() > done_ ? text.substr(done_) : std::string());
  }
  text_ = std::move(text);
  size_t used;
  std::string out = LossyUtf8(std::string_view(text_).substr(done_), /*hold_tail=*/true, &used);
  done_ += used;
  return out;
}

std::string TextStream::Finish() {
  size_t used;
  std::string out = LossyUtf8(std::string_view(text_).substr(done_), /*hold_tail=*/false, &used);
  done_ += used;
  return out;
}

}  // namespace loom
