// `loom data sft` as a library: rendering (which tokens count, where documents start) for
// prompt/response and chat examples under the built-in and file templates; packing for a
// seq_len so the loader's samples never cut an example (and the loader reads the result back
// with the right targets and segments); truncation; every malformed line named file:line; real
// tokenizers (BPE: prompt and response encoded as separate segments, so the mask covers the
// response's own ids; a LLaMA-3 vocabulary in 32-bit shards with its begin/end-of-text), the
// template's system prompt, and the same bytes on any thread count.
#include "data/sft_prepare.h"

#include <fstream>
#include <string>
#include <vector>

#include "data/data_loader.h"
#include "data/token_flags.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "runtime/files.h"
#include "tests/data/tokenizer_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

std::string Text(const std::vector<int32_t>& ids, const std::vector<uint8_t>& flags, uint8_t want) {
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

std::vector<int32_t> Ids(const Tokenizer& tok, const std::string& text) { return tok.Encode(text); }

// Prompt and response are encoded on their own: with "A: " before "the world", one encoding of
// the whole text would merge the space into " the" (GPT-2's pre-tokenizer), leaving no token
// boundary where the response starts.
TEST(SftPrepareTest, RealTokenizerEncodesPromptAndResponseSeparately) {
  auto tok = LoadTokenizer(testing::FixtureDir() + "/gpt2.tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto qa = LoadSftTemplate("qa");
  ASSERT_TRUE(qa.ok());
  data::SftExample ex;
  ex.set_prompt("What is it?");
  ex.set_response("the world");
  auto r = RenderSftExample(ex, *qa, "x:1", tok->get());
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<int32_t> context = Ids(**tok, RenderSftPrompt("What is it?", *qa));
  std::vector<int32_t> want = context;
  for (int32_t id : Ids(**tok, "the world\n")) want.push_back(id);
  want.push_back((*tok)->eot());
  EXPECT_EQ(r->tokens, want);
  ASSERT_EQ(r->flags.size(), r->tokens.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const uint8_t loss = i >= context.size() ? kLossFlag : 0;
    EXPECT_EQ(r->flags[i], loss | (i == 0 ? kDocStartFlag : 0)) << "token " << i;
  }
  // The whole text encoded at once would not split there.
  const std::vector<int32_t> joint = Ids(**tok, "Q: What is it?\nA: the world\n");
  EXPECT_NE(std::vector<int32_t>(joint.begin(), joint.begin() + context.size()), context);

  // The template's system prompt: a system turn first (context), also in the generation prompt.
  data::SftTemplate sys = *qa;
  sys.set_system_prompt("Be brief.");
  EXPECT_EQ(RenderSftPrompt("hi", sys), "Be brief.\nQ: hi\nA: ");
  r = RenderSftExample(ex, sys, "x:1", tok->get());
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<int32_t> sys_context = Ids(**tok, RenderSftPrompt("What is it?", sys));
  EXPECT_EQ(std::vector<int32_t>(r->tokens.begin(), r->tokens.begin() + sys_context.size()),
            sys_context);
  EXPECT_EQ(r->flags[sys_context.size() - 1], 0);
  EXPECT_EQ(r->flags[sys_context.size()], kLossFlag);
}

// A vocabulary above 65,536 (LLaMA-3's special tokens at 128000..): 32-bit shards, each example
// between <|begin_of_text|> and <|end_of_text|>, padding with end-of-text, masks aligned; the
// loader reads it back; the tokenizer goes beside the shards; any thread count, the same bytes.
TEST(SftPrepareTest, LargeVocabularyGivesThirtyTwoBitShards) {
  const testing::ScopedTempDir tmp("sft_llama3");
  const std::string in = tmp.path() + "/in.jsonl";
  WriteLines(in, {R"({"prompt": "What is it?", "response": "the world"})",
                  R"({"messages": [{"role": "user", "content": "你好"}, )"
                  R"({"role": "assistant", "content": "👍 yes"}]})",
                  R"({"prompt": "c", "response": "d"})"});
  const std::string tokenizer = testing::FixtureDir() + "/llama3.tokenizer.json";
  auto tok = LoadTokenizer(tokenizer);
  ASSERT_TRUE(tok.ok()) << tok.status();
  ASSERT_EQ((*tok)->vocab_size(), 128256);
  SftPrepareOptions o;
  o.inputs = {in};
  o.out_dir = tmp.path() + "/out";
  o.val_fraction = 0;
  o.seq_len = 32;
  o.pack = false;  // each example in a sample of its own
  o.tokenizer = tokenizer;
  o.threads = 1;
  auto r = PrepareSftData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id_bytes, 4);
  EXPECT_EQ(r->tokenizer_type, "bpe");
  EXPECT_EQ(r->tokenizer_path, o.out_dir + "/tokenizer.json");
  auto shard = TokenShard::Open(r->train_shard, ShardFormat::kLlmc, 128256);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ((*shard)->id_bytes(), 4);
  auto flags = TokenFlags::Open(TokenFlagsPath(r->train_shard), (*shard)->size());
  ASSERT_TRUE(flags.ok()) << flags.status();
  // Example 0 alone: rendered with the same tokenizer, it is the shard's first sample.
  data::SftExample ex;
  ex.set_prompt("What is it?");
  ex.set_response("the world");
  auto qa = LoadSftTemplate("qa");
  auto want = RenderSftExample(ex, *qa, "x", tok->get());
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(want->tokens.front(), 128000);  // <|begin_of_text|>
  ASSERT_EQ(want->tokens.back(), 128001);   // <|end_of_text|>
  for (size_t i = 0; i < want->tokens.size(); ++i) {
    EXPECT_EQ((*shard)->at(i), want->tokens[i]) << i;
    EXPECT_EQ((*flags)->flags()[i], want->flags[i]) << i;
  }
  // Padding up to the sample's end: end-of-text, context, its own document.
  EXPECT_EQ((*shard)->at(want->tokens.size()), 128001);
  EXPECT_EQ((*flags)->flags()[want->tokens.size()], kDocStartFlag);
  EXPECT_EQ((*shard)->at(31), 128001);
  EXPECT_EQ((*shard)->at(32), 128000);  // example 1 starts sample 1
  DataLoaderOptions lo;
  lo.patterns = {r->train_shard};
  lo.vocab_size = 128256;
  lo.seq_len = 32;
  lo.shuffle = false;
  auto loader = DataLoader::Open(lo);
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ((*loader)->num_samples(), 3);

  // Several threads: the same bytes.
  const std::string one = *ReadFile(r->train_shard), one_mask = *ReadFile(r->train_shard + ".mask");
  o.threads = 3;
  o.overwrite = true;
  r = PrepareSftData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*ReadFile(r->train_shard), one);
  EXPECT_EQ(*ReadFile(r->train_shard + ".mask"), one_mask);

  // A byte run into the same directory: 16-bit ids, and the tokenizer.json is the byte one.
  o.tokenizer.clear();
  r = PrepareSftData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id_bytes, 2);
  auto back = LoadTokenizer(r->tokenizer_path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)->type(), "byte");
  // A tokenizer that does not load is named.
  o.tokenizer = tmp.path() + "/missing.json";
  r = PrepareSftData(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--tokenizer"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace loom
