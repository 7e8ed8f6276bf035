// Byte tokenizer: exact round trip, decode errors, display form, and the description file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "data/tokenizer.h"
#include "runtime/files.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

TEST(ByteTokenizerTest, RoundTripsEveryByte) {
  ByteTokenizer tok;
  std::string text;
  for (int b = 0; b < 256; ++b) text.push_back(static_cast<char>(b));
  text += "héllo, wörld \xF0\x9F\x98\x80";
  std::vector<int32_t> ids = tok.Encode(text);
  ASSERT_EQ(ids.size(), text.size());
  for (size_t i = 0; i < 256; ++i) EXPECT_EQ(ids[i], i);
  auto back = tok.Decode(ids);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, text);
  EXPECT_EQ(tok.vocab_size(), 257);
  EXPECT_EQ(tok.eot(), 256);
}

TEST(ByteTokenizerTest, EncodeAppends) {
  ByteTokenizer tok;
  std::vector<uint16_t> ids = {256};
  tok.Encode("ab", &ids);
  EXPECT_EQ(ids, (std::vector<uint16_t>{256, 'a', 'b'}));
}

TEST(ByteTokenizerTest, DecodeRejectsNonBytes) {
  ByteTokenizer tok;
  auto eot = tok.Decode({'h', 'i', 256});
  ASSERT_FALSE(eot.ok());
  EXPECT_THAT(eot.status().message(), HasSubstr("id 256 at position 2"));
  auto big = tok.Decode({'h', 1000});
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(big.status().message(), HasSubstr("id 1000 at position 1"));
  EXPECT_FALSE(tok.Decode({-1}).ok());
}

TEST(ByteTokenizerTest, DisplayMarksEotAndBadIds) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.DecodeForDisplay({'a', 256, 'b', 300, -4}),
            "a<|endoftext|>b\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(ByteTokenizerTest, DescriptionFileRoundTrips) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = dir + "/tokenizer.json";
  ByteTokenizer tok;
  EXPECT_EQ(tok.DescriptionJson(), "{\"type\":\"byte\",\"vocab_size\":257,\"eot\":256}\n");
  ASSERT_TRUE(AtomicWriteFile(path, tok.DescriptionJson()).ok());
  auto loaded = LoadTokenizer(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->vocab_size(), 257);
  EXPECT_EQ((*loaded)->type(), "byte");
}

TEST(ByteTokenizerTest, BadDescriptionsAreNamed) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  struct Case {
    std::string json, expect;
  } cases[] = {
      {"{\"type\":\"bpe\",\"vocab_size\":50257,\"eot\":50256}", "type \"bpe\""},
      {"{\"type\":\"byte\",\"vocab_size\":256,\"eot\":256}", "vocab_size 256"},
      {"{\"type\":\"byte\",\"vocab_size\":257,\"eot\":0}", "eot 0"},
      {"{\"type\":\"byte\",", "not a valid description"},
      {"{\"type\":\"byte\",\"vocab\":257}", "not a valid description"},
  };
  for (const Case& c : cases) {
    const std::string path = dir + "/t.json";
    ASSERT_TRUE(AtomicWriteFile(path, c.json).ok());
    auto loaded = LoadTokenizer(path);
    ASSERT_FALSE(loaded.ok()) << c.json;
    EXPECT_THAT(loaded.status().message(), HasSubstr(path)) << c.json;
    EXPECT_THAT(loaded.status().message(), HasSubstr(c.expect)) << c.json;
  }
  auto missing = LoadTokenizer(dir + "/none.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("none.json"));
}

}  // namespace
}  // namespace loom
