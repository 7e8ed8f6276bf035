// `data prepare` with real tokenizers: shards hold BOS + Encode(document) + EOT per document,
// 32-bit ids above 65536, the tokenizer lands beside the shards, and any thread count and piece
// size give the same bytes as one thread encoding whole documents.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "data/data_prepare.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "runtime/files.h"
#include "tests/data/tokenizer_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

// Documents with many places to cut ("x\nY") and some that must not be cut (whitespace runs,
// CJK lines, a long line without newlines).
std::vector<std::string> Documents() {
  std::vector<std::string> docs;
  for (int d = 0; d < 5; ++d) {
    std::string text;
    for (int i = 0; i < 60 + 20 * d; ++i) {
      text += absl::StrCat("Line ", i, ": it's doc ", d, ", 12345 tokens? ");
      if (i % 7 == 0) text += "  \n\n  indented\t\ttabs \n";
      if (i % 5 == 0) text += "你好，世界！ 😀\n";
      text += i % 3 == 0 ? "end.\n" : "more text here\n";
    }
    if (d == 2) text += std::string(3000, 'x');
    docs.push_back(text);
  }
  return docs;
}

std::vector<int32_t> ReadShards(const std::vector<std::string>& paths, int vocab) {
  std::vector<int32_t> all;
  for (const auto& p : paths) {
    auto shard = TokenShard::Open(p, ShardFormat::kLlmc, vocab);
    EXPECT_TRUE(shard.ok()) << shard.status();
    if (!shard.ok()) continue;
    for (size_t i = 0; i < (*shard)->size(); ++i) all.push_back((*shard)->at(i));
  }
  return all;
}

struct PrepareRun {
  DataPrepareResult result;
  std::vector<std::string> shard_bytes;  // train then val
};

PrepareRun Prepare(const fs::path& root, const std::string& tokenizer, int threads, int64_t piece) {
  const std::vector<std::string> docs = Documents();
  for (size_t i = 0; i < docs.size(); ++i) {
    fs::create_directories(root / "in");
    std::ofstream(root / "in" / absl::StrCat("doc", i, ".txt"), std::ios::binary) << docs[i];
  }
  DataPrepareOptions o;
  o.inputs = {(root / "in").string()};
  o.out_dir = (root / "out").string();
  o.tokenizer = tokenizer;
  o.threads = threads;
  o.piece_bytes = piece;
  o.val_fraction = 0.2;
  o.shard_tokens = 1000;
  o.overwrite = true;
  auto r = PrepareData(o);
  EXPECT_TRUE(r.ok()) << r.status();
  PrepareRun run;
  if (!r.ok()) return run;
  run.result = *r;
  for (const auto* list : {&r->train_shards, &r->val_shards}) {
    for (const auto& p : *list) run.shard_bytes.push_back(*ReadFile(p));
  }
  return run;
}

void ExpectDocumentsEncoded(const std::string& tokenizer_file, int id_bytes) {
  const testing::ScopedTempDir tmp;
  const std::string path = testing::FixtureDir() + "/" + tokenizer_file;
  auto tok = LoadTokenizer(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const PrepareRun one = Prepare(tmp.path(), path, 1, 1 << 20);
  ASSERT_FALSE(one.shard_bytes.empty());
  EXPECT_EQ(one.result.id_bytes, id_bytes);
  EXPECT_EQ(one.result.tokenizer_type, (*tok)->type());
  // Documents 0..4 in sorted order; 20% (one: document 4) go to validation.
  const std::vector<std::string> docs = Documents();
  std::vector<int32_t> train, val;
  for (size_t i = 0; i < docs.size(); ++i) {
    std::vector<int32_t>& out = i == 4 ? val : train;
    if ((*tok)->bos() >= 0) out.push_back((*tok)->bos());
    (*tok)->Encode(docs[i], &out);
    out.push_back((*tok)->eot());
  }
  EXPECT_EQ(ReadShards(one.result.train_shards, (*tok)->vocab_size()), train);
  EXPECT_EQ(ReadShards(one.result.val_shards, (*tok)->vocab_size()), val);
  // The tokenizer is beside the shards, and the trainer's lookup (the directory) finds it.
  auto beside = LoadTokenizer((tmp.path() / fs::path("out")).string());
  ASSERT_TRUE(beside.ok()) << beside.status();
  EXPECT_EQ((*beside)->vocab_size(), (*tok)->vocab_size());
  EXPECT_EQ((*beside)->Encode(docs[0]), (*tok)->Encode(docs[0]));

  // Three threads and small pieces (documents cut after newlines) write the same bytes.
  const testing::ScopedTempDir tmp3;
  const PrepareRun three = Prepare(tmp3.path(), path, 3, 200);
  EXPECT_EQ(three.result.threads, 3);
  EXPECT_TRUE(three.shard_bytes == one.shard_bytes) << "threads or pieces changed the shards";
}

TEST(DataPrepareTokenizerTest, Gpt2StyleBpe) { ExpectDocumentsEncoded("gpt2.tokenizer.json", 2); }

TEST(DataPrepareTokenizerTest, Llama3StyleBpeWrites32BitShards) {
  ExpectDocumentsEncoded("llama3.tokenizer.json", 4);
}

TEST(DataPrepareTokenizerTest, SentencePiece) {
  if (!SentencePieceAvailable()) GTEST_SKIP() << "built without libsentencepiece";
  ExpectDocumentsEncoded("sp.model", 2);
}

TEST(DataPrepareTokenizerTest, ByteTokenizerPiecesGiveTheSameShards) {
  const testing::ScopedTempDir a, b;
  const PrepareRun one = Prepare(a.path(), "", 1, 1 << 20);
  const PrepareRun three = Prepare(b.path(), "", 3, 100);
  ASSERT_FALSE(one.shard_bytes.empty());
  EXPECT_TRUE(three.shard_bytes == one.shard_bytes);
  EXPECT_EQ(one.result.tokenizer_type, "byte");
}

TEST(DataPrepareTokenizerTest, BadTokenizerIsNamedAndLeavesNothing) {
  const testing::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  fs::create_directories(root / "in");
  std::ofstream(root / "in" / "a.txt") << "hello";
  DataPrepareOptions o;
  o.inputs = {(root / "in").string()};
  o.out_dir = (root / "out").string();
  o.tokenizer = (root / "missing.json").string();
  auto r = PrepareData(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("--tokenizer"));
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("missing.json"));
  EXPECT_FALSE(fs::exists(root / "out"));
}

}  // namespace
}  // namespace loom
