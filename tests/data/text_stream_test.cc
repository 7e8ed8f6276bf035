// TextStream (data/text_stream.h): only complete UTF-8 is handed out while ids arrive; a
// character split over several ids comes out whole once its last byte arrives; bytes that can
// begin no character become U+FFFD at once (one per maximal invalid subpart, as Rust's
// from_utf8_lossy); Finish turns a character left unfinished into U+FFFD. SentencePiece-style
// text (a word's leading space depends on the ids before it) is taken after the prompt's text.
#include "data/text_stream.h"

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/data/tokenizer_testing.h"

namespace loom {
namespace {

std::vector<std::string> Stream(const Tokenizer& tok, const std::vector<int32_t>& prompt,
                                const std::vector<int32_t>& ids) {
  TextStream s(tok, prompt);
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(s.Push(id));
  out.push_back(s.Finish());
  return out;
}

TEST(TextStreamTest, HoldsSplitCharactersAndReplacesBrokenOnes) {
  const ByteTokenizer bytes;
  // "é" (C3 A9) and "👍" (F0 9F 91 8D) one byte per id.
  EXPECT_EQ(
      Stream(bytes, {'a'}, {'x', 0xC3, 0xA9, 0xF0, 0x9F, 0x91, 0x8D, 'y'}),
      (std::vector<std::string>{"x", "", "\xC3\xA9", "", "", "", "\xF0\x9F\x91\x8D", "y", ""}));
  const std::string fffd = "\xEF\xBF\xBD";
  // FF begins nothing: replaced at once. E4 BD then 'z': the maximal subpart E4 BD is one U+FFFD.
  EXPECT_EQ(Stream(bytes, {}, {0xFF, 0xE4, 0xBD, 'z'}),
            (std::vector<std::string>{fffd, "", "", fffd + "z", ""}));
  // ED A0 (a surrogate's start) is invalid after one byte: two replacements.
  EXPECT_EQ(Stream(bytes, {}, {0xED, 0xA0}), (std::vector<std::string>{"", fffd + fffd, ""}));
  // Unfinished at the end: Finish hands it out as U+FFFD.
  EXPECT_EQ(Stream(bytes, {}, {'k', 0xF0, 0x9F}), (std::vector<std::string>{"k", "", "", fffd}));
  size_t used;
  EXPECT_EQ(LossyUtf8("a\xC3", /*hold_tail=*/true, &used), "a");
  EXPECT_EQ(used, 1u);
}

TEST(TextStreamTest, BpeTokensThatSplitACharacter) {
  auto tok = LoadTokenizer(testing::FixtureDir() + "/gpt2.tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  // Byte-level tokens of single bytes exist for every byte: find the ids of 你 (E4 BD A0).
  std::vector<int32_t> ids;
  for (unsigned char b : std::string("\xE4\xBD\xA0")) {
    const std::vector<int32_t> one = (*tok)->Encode(std::string(1, static_cast<char>(b)));
    ASSERT_EQ(one.size(), 1u);
    ids.push_back(one[0]);
  }
  ids.push_back((*tok)->Encode("!")[0]);
  EXPECT_EQ(Stream(**tok, (*tok)->Encode("Hi "), ids),
            (std::vector<std::string>{"", "", "\xE4\xBD\xA0", "!", ""}));
}

}  // namespace
}  // namespace loom
