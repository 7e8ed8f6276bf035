// Token ids to printable text as they are generated: TextStream hands out only complete UTF-8.
//
// A byte-level BPE token can end inside a character (an emoji is often two or three tokens),
// and a SentencePiece token's text depends on its neighbours (the leading space of a word), so
// the text of new ids is not the concatenation of each id's text. TextStream decodes the whole
// sequence (prompt and new ids) after each id, takes what follows the prompt's text, and hands
// out the part not yet handed out up to the last complete character; bytes that start a
// character still unfinished are held for the next id. Bytes that can begin no character
// become U+FFFD, one per maximal invalid subpart (what Rust's String::from_utf8_lossy, and so
// `tokenizers`' decode, does); Finish() hands out what is held, an unfinished character as
// U+FFFD. So the concatenation of everything handed out equals the lossy UTF-8 of the new ids'
// bytes (byte, bpe) or of the sequence's text after the prompt's (sentencepiece).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "data/tokenizer.h"

namespace loom {

class TextStream {
 public:
  // `tokenizer` must outlive the stream; `prompt` are the ids before the first Push.
  TextStream(const Tokenizer& tokenizer, absl::Span<const int32_t> prompt);

  // The complete characters `id` finishes (possibly none: "").
  std::string Push(int32_t id);
  // What is still held, with an unfinished character as U+FFFD; "" when nothing is held.
  std::string Finish();

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> ids_;
  size_t prompt_bytes_;  // of the prompt's text
  std::string text_;     // the text after the prompt's, as last decoded
  size_t done_ = 0;      // bytes of text_ handed out
};

// The lossy UTF-8 of `bytes` (as TextStream hands it out): valid characters as they are, each
// maximal invalid subpart as U+FFFD. With `hold_tail`, a tail that is an unfinished character
// is left out and *used says where it begins; else *used = bytes.size().
std::string LossyUtf8(std::string_view bytes, bool hold_tail, size_t* used);

}  // namespace loom
