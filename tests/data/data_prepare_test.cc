// `data prepare` end to end on a temporary directory: documents become shards the loader reads
// back token for token, the validation split is deterministic, and bad inputs are named.
#include "data/data_prepare.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/data_loader.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// All tokens of the shards, in order.
std::vector<uint16_t> ReadAll(const std::vector<std::string>& shards) {
  std::vector<uint16_t> all;
  for (const auto& path : shards) {
    auto shard = TokenShard::Open(path, ShardFormat::kLlmc, ByteTokenizer::kVocabSize);
    EXPECT_TRUE(shard.ok()) << shard.status();
    if (shard.ok()) {
      for (size_t i = 0; i < (*shard)->size(); ++i) all.push_back((*shard)->at(i));
    }
  }
  return all;
}

std::vector<uint16_t> Doc(const std::string& text) {
  std::vector<uint16_t> ids;
  ByteTokenizer().Encode(text, &ids);
  ids.push_back(ByteTokenizer::kEot);
  return ids;
}

TEST(ValidationDocumentsTest, DeterministicSpreadAndBounds) {
  EXPECT_THAT(ValidationDocuments(10, 0.2), ElementsAre(4, 9));
  EXPECT_THAT(ValidationDocuments(10, 0.01), ElementsAre(9));  // at least one
  EXPECT_THAT(ValidationDocuments(2, 0.9), ElementsAre(1));    // never all
  EXPECT_TRUE(ValidationDocuments(1, 0.5).empty());            // one document stays training
  EXPECT_TRUE(ValidationDocuments(10, 0).empty());
  EXPECT_EQ(ValidationDocuments(1000, 0.1).size(), 100u);
}

TEST(DataPrepareTest, SymlinkInsideADirectoryIsAnAliasNotASecondDocument) {
  // Debian's /usr/share/common-licenses holds GPL -> GPL-3 and friends.
  const testing::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  WriteText(root / "in/GPL-3", "gnu");
  WriteText(root / "in/MIT", "mit");
  fs::create_symlink("GPL-3", root / "in/GPL");
  fs::create_symlink(root / "elsewhere.txt", root / "in/zz-link");  // target outside the walk
  WriteText(root / "elsewhere.txt", "outside");
  DataPrepareOptions o;
  o.inputs = {(root / "in").string()};
  o.out_dir = (root / "out").string();
  o.val_fraction = 0;
  auto r = PrepareData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->documents, 3);  // GPL-3, MIT and the link to a file read nowhere else
}

TEST(DataPrepareTest, EndToEnd) {
  const testing::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  // Inputs: a directory (walked recursively, sorted) and a single file given after it.
  WriteText(root / "in/b.txt", "bravo");
  WriteText(root / "in/a.txt", "alpha");
  WriteText(root / "in/sub/c.txt", "charlie delta");
  WriteText(root / "in/sub/empty.txt", "");
  WriteText(root / "extra.txt", std::string("echo \xff\x00 bytes", 13));

  DataPrepareOptions o;
  o.inputs = {(root / "in").string(), (root / "extra.txt").string()};
  o.out_dir = (root / "out").string();
  // 2 of 5 documents: numbers 2 (sub/c.txt) and 4 (extra.txt) of the order a, b, sub/c,
  // sub/empty, extra.
  o.val_fraction = 0.4;
  o.shard_tokens = 7;
  auto r = PrepareData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->documents, 5);
  EXPECT_EQ(r->train_documents, 3);
  EXPECT_EQ(r->val_documents, 2);

  std::vector<uint16_t> train;
  for (const char* text : {"alpha", "bravo", ""}) {
    std::vector<uint16_t> d = Doc(text);
    train.insert(train.end(), d.begin(), d.end());
  }
  std::vector<uint16_t> val = Doc("charlie delta");
  std::vector<uint16_t> extra = Doc(std::string("echo \xff\x00 bytes", 13));
  val.insert(val.end(), extra.begin(), extra.end());

  EXPECT_EQ(r->train_tokens, static_cast<int64_t>(train.size()));
  EXPECT_EQ(r->val_tokens, static_cast<int64_t>(val.size()));
  EXPECT_EQ(ReadAll(r->train_shards), train);
  EXPECT_EQ(ReadAll(r->val_shards), val);
  // Shards of 7 tokens, the last one holding the rest; named in order.
  ASSERT_EQ(r->train_shards.size(), (train.size() + 6) / 7);
  EXPECT_EQ(fs::path(r->train_shards[0]).filename(), "train_000000.bin");
  EXPECT_EQ(fs::path(r->train_shards[1]).filename(), "train_000001.bin");
  EXPECT_EQ(fs::path(r->val_shards[0]).filename(), "val_000000.bin");

  // The trainer's view: the tokenizer description and a loader over the train glob.
  auto tok = LoadTokenizer((root / "out/tokenizer.json").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  DataLoaderOptions lo;
  lo.patterns = {(root / "out/train_*.bin").string()};
  lo.vocab_size = (*tok)->vocab_size();
  lo.seq_len = 3;
  lo.shuffle = false;
  auto loader = DataLoader::Open(lo);
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ((*loader)->num_tokens(), static_cast<int64_t>(train.size()));
  std::vector<int32_t> in(3), tg(3);
  ASSERT_TRUE((*loader)->NextBatch(1, absl::MakeSpan(in), absl::MakeSpan(tg)).ok());
  EXPECT_EQ(*(*tok)->Decode(in), "alp");
  EXPECT_EQ(*(*tok)->Decode(tg), "lph");
}

TEST(DataPrepareTest, OutputInsideInputIsNotReadBack) {
  const testing::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  WriteText(root / "a.txt", "one");
  WriteText(root / "b.txt", "two");
  DataPrepareOptions o;
  o.inputs = {root.string()};
  o.out_dir = (root / "shards").string();
  o.val_fraction = 0;
  ASSERT_TRUE(PrepareData(o).ok());
  o.overwrite = true;
  auto r = PrepareData(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->documents, 2);
  EXPECT_TRUE(r->val_shards.empty());
  EXPECT_FALSE(fs::exists(root / "shards/val_000000.bin"));
}

TEST(DataPrepareTest, RefusesOldShardsUnlessOverwrite) {
  const testing::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  WriteText(root / "in/a.txt", std::string(100, 'x'));
  DataPrepareOptions o;
  o.inputs = {(root / "in").string()};
  o.out_dir = (root / "out").string();
  o.shard_tokens = 10;  // 11 shards
  ASSERT_TRUE(PrepareData(o).ok());
  ASSERT_TRUE(fs::exists(root / "out/train_000010.bin"));
  o.shard_tokens = 1000;
  auto again = PrepareData(o);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(), HasSubstr("already holds shards"));
  o.overwrite = true;
  ASSERT_TRUE(PrepareData(o).ok());
  // No shard of the first run survives to be globbed with the new one.
  EXPECT_TRUE(fs::exists(root / "out/train_000000.bin"));
  EXPECT_FALSE(fs::exists(root / "out/train_000001.bin"));
  EXPECT_FALSE(fs::exists(root / "out/train_000010.bin"));
}

TEST(DataPrepareTest, BadInputsAreNamed) {
  const testing::ScopedTempDir tmp;
  const fs::path root = tmp.path();
  WriteText(root / "a.txt", "x");
  DataPrepareOptions o;
  o.out_dir = (root / "out").string();
  o.inputs = {(root / "a.txt").string(), (root / "missing.txt").string()};
  auto r = PrepareData(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr((root / "missing.txt").string()));

  o.inputs = {(root / "a.txt").string(), root.string()};
  EXPECT_THAT(PrepareData(o).status().message(), HasSubstr("given twice"));

  fs::create_directories(root / "empty");
  o.inputs = {(root / "empty").string()};
  EXPECT_THAT(PrepareData(o).status().message(), HasSubstr("no files"));

  o.inputs = {(root / "a.txt").string()};
  o.val_fraction = 1.0;
  EXPECT_THAT(PrepareData(o).status().message(), HasSubstr("--val-fraction"));
  o.val_fraction = 0;
  o.shard_tokens = 0;
  EXPECT_THAT(PrepareData(o).status().message(), HasSubstr("--shard-tokens"));
}

}  // namespace
}  // namespace loom
