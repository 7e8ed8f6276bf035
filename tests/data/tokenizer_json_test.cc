// The JSON reader under tokenizer.json: values, escapes (\u with surrogate pairs to UTF-8),
// member lookup, and refusals with the byte offset (bad syntax, unpaired surrogates, nesting
// beyond 64, trailing text).
#include "data/tokenizer_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace loom::json {
namespace {

using ::testing::HasSubstr;

TEST(TokenizerJsonTest, ReadsValues) {
  auto v = Parse(R"( {"a": [1, -2.5e2, true, false, null], "s": "x\"\\\/\b\f\n\r\tq",
                     "u": "\u00e9\u4e2d\ud83d\ude00", "a": "last wins"} )");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_TRUE(v->is_object());
  ASSERT_EQ(v->object.size(), 4u);
  const Value& a = v->object[0].second;
  ASSERT_TRUE(a.is_array());
  EXPECT_EQ(a.array[0].number, 1);
  EXPECT_EQ(a.array[1].number, -250);
  EXPECT_TRUE(a.array[2].boolean);
  EXPECT_TRUE(a.array[3].is_bool() && !a.array[3].boolean);
  EXPECT_TRUE(a.array[4].is_null());
  EXPECT_EQ(v->Find("s")->string, "x\"\\/\b\f\n\r\tq");
  EXPECT_EQ(v->Find("u")->string, "é中😀");
  EXPECT_EQ(v->Find("a")->string, "last wins");
  EXPECT_EQ(v->Find("missing"), nullptr);
  EXPECT_EQ(a.Find("x"), nullptr);  // not an object
}

TEST(TokenizerJsonTest, RefusesWithTheOffset) {
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"{\"a\" 1}", "expected ':' at byte 5"},
      {"[1, 2", "expected ',' or ']' at byte 5"},
      {"\"\\ud800x\"", "unpaired surrogate"},
      {"\"\\udc00\"", "unpaired surrogate"},
      {"\"a\nb\"", "control character"},
      {"[1] 2", "unexpected text after the JSON value at byte 4"},
      {"tru", "invalid literal"},
      {"-", "bad number"},
      {"", "unexpected end of input"},
      {std::string(65, '[') + std::string(65, ']'), "nesting deeper than 64"},
  };
  for (const Case& c : cases) {
    auto v = Parse(c.text);
    ASSERT_FALSE(v.ok()) << c.text;
    EXPECT_THAT(v.status().message(), HasSubstr(c.expect)) << c.text;
  }
  EXPECT_TRUE(Parse(std::string(64, '[') + std::string(64, ']')).ok());
}

}  // namespace
}  // namespace loom::json
