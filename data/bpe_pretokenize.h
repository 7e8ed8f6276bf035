// The pre-tokenizer splits of byte-level BPE tokenizers, matched by hand: the GPT-2 regex and
// the LLaMA-3 (tiktoken cl100k) regex, exactly as the reference library's regex engine
// (Oniguruma, leftmost alternative first, greedy with backtracking) splits text with them:
//
//   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   LLaMA-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// std::regex has no \p{L}: letters and numbers come from generated Unicode tables
// (data/bpe_unicode_tables.cc), \s is Oniguruma's Unicode whitespace. Every character falls in
// one of the last alternatives, so the pieces cover the text with no gaps. Text that is not
// valid UTF-8 still splits: each invalid byte counts as one character that is neither letter,
// number nor space, so any bytes can be encoded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace loom::bpe {

struct UnicodeRange {
  uint32_t first, last;  // inclusive
};
extern const UnicodeRange kLetterRanges[];  // general category L*
extern const size_t kLetterRangesSize;
extern const UnicodeRange kNumberRanges[];  // general category N*
extern const size_t kNumberRangesSize;

enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };
// The class of a code point as the regexes see it (\p{L}, \p{N}, \s, anything else).
CharClass Classify(uint32_t cp);

enum class SplitRegex { kGpt2, kLlama3 };
// The regexes as tokenizer.json spells them (a Split pre-tokenizer's "Regex").
inline constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Appends the pieces of `text` (views into it, in order, together exactly `text`) to `out`.
void SplitPreTokens(std::string_view text, SplitRegex regex, std::vector<std::string_view>* out);

}  // namespace loom::bpe
