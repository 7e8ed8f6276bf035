// `loom data sft` as a library: rendering (which tokens count, where documents start) for
// prompt/response and chat examples under the built-in and file templates; packing for a
// seq_len so the loader's samples never cut an example (and the loader reads the result back
// with the right targets and segments); truncation; and every malformed line named file:line.
#include "data/sft_prepare.h"

#include <fstream>
#include <string>
#include <vector>

#include "data/data_loader.h"
#include "data/token_flags.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

std::string Text(const std::vector<uint16_t>& ids, const std::vector<uint8_t>& flags,
                 uint8_t want) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if ((flags[i] & want) == 0) continue;
    s += ids[i] == ByteTokenizer::kEot ? std::string("<eot>") : std::string(1, char(ids[i]));
  }
  return s;
}

void WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const std::string& l : lines) out << l << "\n";
}

TEST(SftPrepareTest, OnlyAssistantTokensCount) {
  auto qa = LoadSftTemplate("qa");
  ASSERT_TRUE(qa.ok());
  data::SftExample ex;
  ex.set_prompt("2+2?");
  ex.set_response("4");
  auto r = RenderSftExample(ex, *qa, "x:1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Text(r->tokens, std::vector<uint8_t>(r->flags.size(), 1), 1), "Q: 2+2?\nA: 4\n<eot>");
  EXPECT_EQ(Text(r->tokens, r->flags, kLossFlag), "4\n<eot>");
  EXPECT_EQ(r->flags[0], kDocStartFlag);
  for (size_t i = 1; i < r->flags.size(); ++i) EXPECT_EQ(r->flags[i] & kDocStartFlag, 0);

  // Chat: two assistant turns count, system and user turns and the cue do not.
  auto chatml = LoadSftTemplate("chatml");
  ASSERT_TRUE(chatml.ok());
  data::SftExample chat;
  for (auto [role, content] :
       std::vector<std::pair<std::string, std::string>>{{"system", "S"},
                                                        {"user", "U1"},
                                                        {"assistant", "A1"},
                                                        {"user", "U2"},
                                                        {"assistant", "A2"}}) {
    auto* m = chat.add_messages();
    m->set_role(role);
    m->set_content(content);
  }
  r = RenderSftExample(chat, *chatml, "x:2");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Text(r->tokens, r->flags, kLossFlag), "A1<|im_end|>\nA2<|im_end|>\n<eot>");
  EXPECT_EQ(RenderSftPrompt("hi", *qa), "Q: hi\nA: ");
}

TEST(SftPrepareTest, TemplateFromFile) {
  const testing::ScopedTempDir tmp("sft_template");
  const std::string path = tmp.path() + "/t.textproto";
  WriteLines(path, {"user_prefix: \"<u>\" assistant_prefix: \"<a>\""});
  auto t = LoadSftTemplate(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderSftPrompt("x", *t), "<u>x<a>");
  WriteLines(path, {"user_prefx: \"<u>\""});
  EXPECT_FALSE(LoadSftTemplate(path).ok());
  auto missing = LoadSftTemplate("no_such_template");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("neither a built-in template"), std::string::npos);
}

TEST(SftPrepareTest, PackedForSeqLenAndReadBackByTheLoader) {
  const testing::ScopedTempDir tmp("sft_pack");
  const std::string in = tmp.path() + "/in.jsonl";
  WriteLines(in, {R"({"prompt": "aaaa", "response": "bb"})",  // 15 tokens with "qa"
                  R"({"prompt": "c", "response": "d"})",      // 11
                  "", R"({"prompt": "eeeeeeeeeeeeeeeeeeeeeee", "response": "f"})"});  // 34 > 20
  SftPrepareOptions o;
  o.inputs = {in};
  o.out_dir = tmp.path() + "/out";
  o.val_fraction = 0;
  o.seq_len = 20;
  auto r = PrepareSftData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->examples, 3);
  EXPECT_EQ(r->truncated, 1);
  // 15 + 5 pad | 11 + 9 pad | 20 (cut) | 1 closing pad.
  EXPECT_EQ(r->train_tokens, 61);
  EXPECT_EQ(r->pad_tokens, 15);
  DataLoaderOptions lo;
  lo.patterns = {r->train_shard};
  lo.vocab_size = ByteTokenizer::kVocabSize;
  lo.seq_len = 20;
  lo.shuffle = false;
  auto loader = DataLoader::Open(lo);
  ASSERT_TRUE(loader.ok()) << loader.status();
  ASSERT_EQ((*loader)->num_samples(), 3);
  std::vector<int32_t> in_ids(60), tg(60), seg(60);
  ASSERT_TRUE((*loader)
                  ->NextBatch(3, absl::MakeSpan(in_ids), absl::MakeSpan(tg), absl::MakeSpan(seg))
                  .ok());
  // Sample 0: "Q: aaaa\nA: bb\n<eot>" then padding (a second segment); the counted targets are
  // "bb\n<eot>", and the sample's last target (the next example's first token) does not count.
  std::string counted;
  for (int i = 0; i < 20; ++i) {
    if (tg[i] >= 0) counted += tg[i] == ByteTokenizer::kEot ? "<eot>" : std::string(1, char(tg[i]));
  }
  EXPECT_EQ(counted, "bb\n<eot>");
  EXPECT_EQ(seg[0], 0);
  EXPECT_EQ(seg[14], 0);
  EXPECT_EQ(seg[15], 1);  // padding
  EXPECT_EQ(tg[19], -1);
  // Every sample starts with "Q: ".
  for (int s = 0; s < 3; ++s) EXPECT_EQ(in_ids[s * 20], 'Q') << "sample " << s;

  // Again without --overwrite: refused.
  auto again = PrepareSftData(o);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("--overwrite"), std::string::npos);

  // Unpacked: every example alone at the start of a sample of its own.
  o.overwrite = true;
  o.seq_len = 40;
  o.pack = false;
  r = PrepareSftData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->train_tokens, 3 * 40 + 1);
  auto shard = TokenShard::Open(r->train_shard, ShardFormat::kLlmc, ByteTokenizer::kVocabSize);
  ASSERT_TRUE(shard.ok());
  for (int s = 0; s < 3; ++s) EXPECT_EQ((*shard)->at(s * 40), 'Q') << "sample " << s;
  o.seq_len = 0;
  EXPECT_FALSE(PrepareSftData(o).ok());
}

TEST(SftPrepareTest, MalformedLinesAreNamed) {
  const testing::ScopedTempDir tmp("sft_bad");
  const std::string in = tmp.path() + "/in.jsonl";
  struct Case {
    std::string line, want;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"prompt": "x")", "in.jsonl:2: not a JSON example"},
           {R"({"prompt": "x", "answer": "y"})", "in.jsonl:2: not a JSON example"},
           {R"({"prompt": "x"})", "in.jsonl:2: \"response\" is missing or empty"},
           {R"({})", "in.jsonl:2: needs \"prompt\" and \"response\", or \"messages\""},
           {R"({"prompt": "x", "response": "y", "messages": [{"role": "user", "content": "z"}]})",
            "in.jsonl:2: has both"},
           {R"({"messages": [{"role": "bot", "content": "y"}]})",
            "in.jsonl:2: messages[0].role is \"bot\""},
           {R"({"messages": [{"role": "user", "content": "y"}]})",
            "in.jsonl:2: no assistant message"}}) {
    WriteLines(in, {R"({"prompt": "ok", "response": "fine"})", c.line});
    SftPrepareOptions o;
    o.inputs = {in};
    o.out_dir = tmp.path() + "/out";
    auto r = PrepareSftData(o);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos)
        << c.line << " -> " << r.status();
  }
}

}  // namespace
}  // namespace loom
