// SentencePiece .model through libsentencepiece: ids equal to the `sentencepiece` Python
// package on the fixtures (a LLaMA-2-style BPE model with byte fallback), special ids from the
// model, decoding, and the refusal when the build lacks the library.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "data/sentencepiece_tokenizer.h"
#include "data/tokenizer.h"
#include "runtime/files.h"
#include "tests/data/tokenizer_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

TEST(SentencePieceTokenizerTest, MatchesSentencePieceLibrary) {
  auto tok = LoadTokenizer(testing::FixtureDir() + "/sp.model");
  if (!SentencePieceAvailable()) {
    ASSERT_FALSE(tok.ok());
    // Missing from the build ("install libsentencepiece-dev"), or off in a sanitizer build.
    EXPECT_THAT(tok.status().message(), HasSubstr("need libsentencepiece"));
    GTEST_SKIP() << "no SentencePiece in this build: " << tok.status();
  }
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.type(), "sentencepiece");
  EXPECT_EQ(t.vocab_size(), 800);
  EXPECT_EQ(t.bos(), 1);  // <s>, as in LLaMA-2
  EXPECT_EQ(t.eot(), 2);  // </s>
  EXPECT_EQ(t.TokenId("</s>"), 2);
  EXPECT_EQ(t.TokenId("no such piece"), std::nullopt);
  const auto cases = testing::ReadExpected("sp.expected.tsv");
  ASSERT_GE(cases.size(), 40u);
  for (const auto& c : cases) {
    EXPECT_EQ(t.Encode(c.text), c.ids) << "text: \"" << c.text << "\"";
  }
  // Byte fallback makes decoding exact for text without leading spaces (the dummy prefix's
  // space is removed again).
  for (const std::string text : {"Hello, world!", "你好 ☃ 𝔘 end", "tabs\tand\nnewlines"}) {
    auto back = t.Decode(t.Encode(text));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
  }
  auto bad = t.Decode({5, 800});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("id 800 at position 1"));
  std::vector<int32_t> ids = t.Encode("hi");
  ids.push_back(t.eot());
  ids.push_back(-1);
  EXPECT_EQ(t.DecodeForDisplay(ids), "hi</s>\xEF\xBF\xBD");
  // Bytes that are not UTF-8 still encode.
  EXPECT_FALSE(t.Encode("bad \xff\xfe bytes").empty());
}

TEST(SentencePieceTokenizerTest, GarbageIsNamed) {
  if (!SentencePieceAvailable()) GTEST_SKIP() << "built without libsentencepiece";
  const testing::ScopedTempDir tmp;
  const std::string path = tmp.path() + "/broken.model";
  ASSERT_TRUE(AtomicWriteFile(path, "\x01\x02 not a model").ok());
  auto tok = LoadTokenizer(path);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok.status().message(), HasSubstr(path));
  EXPECT_THAT(tok.status().message(), HasSubstr("not a SentencePiece model"));
}

}  // namespace
}  // namespace loom
