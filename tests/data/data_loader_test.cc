// DataLoader: what a sample holds, deterministic shuffles that change per epoch, disjoint and
// covering data-parallel shares, exact resume from a saved position, and validation order.
#include "data/data_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <numeric>
#include <set>

#include "tests/temp_dir.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

// Shards whose token at global position p is p % 251, so a sample's first token and shard
// tell where it came from. Sizes chosen so tails are dropped: with T = 8 the shards give
// (100-1)/8 = 12, (57-1)/8 = 7 and (9-1)/8 = 1 samples, and the 5-token shard none.
struct Fixture {
  std::shared_ptr<testing::ScopedTempDir> tmp;  // removed when the last copy goes
  std::string dir;
  std::vector<std::vector<uint16_t>> shards;
};

Fixture MakeShards(ShardFormat format = ShardFormat::kLlmc) {
  Fixture f;
  f.tmp = std::make_shared<testing::ScopedTempDir>();
  f.dir = f.tmp->path();
  int p = 0;
  for (int n : {100, 57, 5, 9}) {
    std::vector<uint16_t> tokens(n);
    for (auto& t : tokens) t = static_cast<uint16_t>(p++ % 251);
    const std::string path =
        (std::filesystem::path(f.dir) / ("shard_" + std::to_string(f.shards.size()) + ".bin"))
            .string();
    EXPECT_TRUE(WriteShard(path, tokens, format).ok());
    f.shards.push_back(tokens);
  }
  return f;
}

DataLoaderOptions Options(const Fixture& f, int seq_len = 8) {
  DataLoaderOptions o;
  o.patterns = {(std::filesystem::path(f.dir) / "shard_*.bin").string()};
  o.vocab_size = 251;
  o.seq_len = seq_len;
  o.seed = 1234;
  return o;
}

std::unique_ptr<DataLoader> Open(const DataLoaderOptions& o) {
  auto loader = DataLoader::Open(o);
  EXPECT_TRUE(loader.ok()) << loader.status();
  return loader.ok() ? std::move(*loader) : nullptr;
}

struct Batch {
  std::vector<int32_t> inputs, targets;
  bool operator==(const Batch& o) const { return inputs == o.inputs && targets == o.targets; }
};

Batch Next(DataLoader& loader, int b) {
  Batch batch;
  batch.inputs.resize(b * loader.seq_len());
  batch.targets.resize(b * loader.seq_len());
  absl::Status s = loader.NextBatch(b, absl::MakeSpan(batch.inputs), absl::MakeSpan(batch.targets));
  EXPECT_TRUE(s.ok()) << s;
  return batch;
}

// The global sample ids of one rank's epoch.
std::vector<int64_t> Share(const DataLoader& loader, int64_t epoch) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < loader.samples_per_rank(); ++i) ids.push_back(loader.SampleAt(epoch, i));
  return ids;
}

TEST(DataLoaderTest, CountsSamplesWithinShards) {
  Fixture f = MakeShards();
  auto loader = Open(Options(f));
  ASSERT_NE(loader, nullptr);
  EXPECT_EQ(loader->shards().size(), 4u);
  EXPECT_EQ(loader->num_samples(), 12 + 7 + 0 + 1);
  EXPECT_EQ(loader->num_tokens(), 100 + 57 + 5 + 9);
  EXPECT_EQ(loader->dropped_tokens(), (100 - 96) + (57 - 56) + 5 + (9 - 8));
}

TEST(DataLoaderTest, SamplesAreNextTokenPairsFromOneShard) {
  Fixture f = MakeShards();
  DataLoaderOptions o = Options(f);
  o.shuffle = false;
  auto loader = Open(o);
  ASSERT_NE(loader, nullptr);
  const int t = 8;
  Batch all = Next(*loader, 20);
  // Unshuffled order is shard order: shard 0 samples at 0, 8, ..., 88; shard 1 at 0..48;
  // shard 3 at 0.
  std::vector<std::pair<int, int>> where;
  for (int k = 0; k < 12; ++k) where.push_back({0, k * t});
  for (int k = 0; k < 7; ++k) where.push_back({1, k * t});
  where.push_back({3, 0});
  for (int b = 0; b < 20; ++b) {
    const auto& shard = f.shards[where[b].first];
    for (int i = 0; i < t; ++i) {
      ASSERT_EQ(all.inputs[b * t + i], shard[where[b].second + i]) << "sample " << b;
      ASSERT_EQ(all.targets[b * t + i], shard[where[b].second + i + 1]) << "sample " << b;
    }
  }
}

TEST(DataLoaderTest, ShuffleIsDeterministicAndChangesPerEpoch) {
  Fixture f = MakeShards();
  auto a = Open(Options(f));
  auto b = Open(Options(f));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (int step = 0; step < 7; ++step) ASSERT_EQ(Next(*a, 3), Next(*b, 3)) << "step " << step;

  // Each epoch is a permutation of all samples, and epochs differ.
  std::vector<int64_t> e0 = Share(*a, 0), e1 = Share(*a, 1), e2 = Share(*a, 2);
  std::vector<int64_t> identity(20);
  std::iota(identity.begin(), identity.end(), 0);
  for (auto e : {e0, e1, e2}) {
    std::sort(e.begin(), e.end());
    EXPECT_EQ(e, identity);
  }
  EXPECT_NE(e0, e1);
  EXPECT_NE(e1, e2);
  EXPECT_NE(e0, identity);

  // Another seed, another order.
  DataLoaderOptions o = Options(f);
  o.seed = 1235;
  auto c = Open(o);
  EXPECT_NE(Share(*c, 0), e0);
}

TEST(DataLoaderTest, BatchesRunAcrossEpochs) {
  Fixture f = MakeShards();
  DataLoaderOptions o = Options(f);
  auto loader = Open(o);
  // 20 samples: three batches of 7 end one sample into epoch 1.
  Batch b1 = Next(*loader, 7), b2 = Next(*loader, 7), b3 = Next(*loader, 7);
  EXPECT_EQ(loader->GetState(), (DataLoaderState{1, 1}));
  // The last row of b3 is the first sample of epoch 1: what a fresh loader gives after one
  // whole epoch.
  auto fresh = Open(o);
  Batch epoch0 = Next(*fresh, 20);
  EXPECT_TRUE(std::equal(b1.inputs.begin(), b1.inputs.end(), epoch0.inputs.begin()));
  EXPECT_TRUE(std::equal(b2.inputs.begin(), b2.inputs.end(), epoch0.inputs.begin() + 7 * 8));
  Batch epoch1 = Next(*fresh, 1);
  EXPECT_TRUE(std::equal(epoch1.inputs.begin(), epoch1.inputs.end(), b3.inputs.end() - 8));
  EXPECT_TRUE(std::equal(epoch1.targets.begin(), epoch1.targets.end(), b3.targets.end() - 8));
}

TEST(DataLoaderTest, DataParallelSharesAreDisjointAndCover) {
  Fixture f = MakeShards();
  for (int dp : {1, 2, 4, 5, 3}) {
    std::vector<int64_t> all;
    for (int64_t epoch : {0, 1}) {
      std::vector<int64_t> epoch_ids;
      for (int r = 0; r < dp; ++r) {
        DataLoaderOptions o = Options(f);
        o.dp_rank = r;
        o.dp_size = dp;
        auto loader = Open(o);
        ASSERT_NE(loader, nullptr);
        EXPECT_EQ(loader->samples_per_rank(), 20 / dp);
        std::vector<int64_t> share = Share(*loader, epoch);
        epoch_ids.insert(epoch_ids.end(), share.begin(), share.end());
      }
      std::set<int64_t> unique(epoch_ids.begin(), epoch_ids.end());
      EXPECT_EQ(unique.size(), epoch_ids.size()) << "dp " << dp << ": ranks overlap";
      // Every sample is used except the epoch's last 20 mod dp positions.
      EXPECT_EQ(unique.size(), 20u - 20 % dp) << "dp " << dp;
    }
  }
}

TEST(DataLoaderTest, RankReadsTheSamplesItsShareNames) {
  Fixture f = MakeShards();
  DataLoaderOptions o = Options(f);
  o.dp_rank = 1;
  o.dp_size = 2;
  auto loader = Open(o);
  DataLoaderOptions u = Options(f);
  u.shuffle = false;
  auto plain = Open(u);
  Batch all = Next(*plain, 20);  // sample k's rows, in id order
  Batch b = Next(*loader, 4);
  for (int i = 0; i < 4; ++i) {
    const int64_t id = loader->SampleAt(0, i);
    EXPECT_TRUE(std::equal(b.inputs.begin() + i * 8, b.inputs.begin() + (i + 1) * 8,
                           all.inputs.begin() + id * 8));
  }
}

TEST(DataLoaderTest, StateRestoreContinuesExactly) {
  Fixture f = MakeShards();
  DataLoaderOptions o = Options(f);
  o.dp_rank = 0;
  o.dp_size = 2;
  auto a = Open(o);
  for (int i = 0; i < 4; ++i) Next(*a, 3);  // 12 of 10 per epoch: into epoch 1
  const DataLoaderState saved = a->GetState();
  EXPECT_EQ(saved, (DataLoaderState{1, 2}));
  std::vector<Batch> expected;
  for (int i = 0; i < 5; ++i) expected.push_back(Next(*a, 3));

  auto b = Open(o);
  ASSERT_TRUE(b->SetState(saved).ok());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Next(*b, 3), expected[i]) << "batch " << i;
}

TEST(DataLoaderTest, SetStateRejectsPositionsPastTheEpoch) {
  Fixture f = MakeShards();
  auto loader = Open(Options(f));
  EXPECT_TRUE(loader->SetState({3, 20}).ok());  // the end of an epoch is a valid position
  absl::Status s = loader->SetState({0, 21});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("20 samples per rank"));
  EXPECT_FALSE(loader->SetState({-1, 0}).ok());
  EXPECT_EQ(loader->GetState(), (DataLoaderState{3, 20}));
}

TEST(DataLoaderTest, ValidationIsInOrderAndRewinds) {
  Fixture f = MakeShards();
  DataLoaderOptions o = Options(f);
  o.shuffle = false;
  auto loader = Open(o);
  Batch first = Next(*loader, 5);
  Next(*loader, 5);
  loader->Rewind();
  EXPECT_EQ(loader->GetState(), (DataLoaderState{0, 0}));
  EXPECT_EQ(Next(*loader, 5), first);
  EXPECT_EQ(first.inputs[0], 0);
  EXPECT_EQ(first.inputs[8], 8);
}

TEST(DataLoaderTest, RawU16Shards) {
  Fixture f = MakeShards(ShardFormat::kRawU16);
  DataLoaderOptions o = Options(f);
  o.format = ShardFormat::kRawU16;
  o.shuffle = false;
  auto loader = Open(o);
  ASSERT_NE(loader, nullptr);
  EXPECT_EQ(loader->num_samples(), 20);
  Batch b = Next(*loader, 1);
  EXPECT_EQ(b.inputs, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(DataLoaderTest, Errors) {
  Fixture f = MakeShards();
  DataLoaderOptions o = Options(f);
  o.seq_len = 0;
  EXPECT_THAT(DataLoader::Open(o).status().message(), HasSubstr("seq_len"));
  o = Options(f);
  o.dp_rank = 2;
  o.dp_size = 2;
  EXPECT_THAT(DataLoader::Open(o).status().message(), HasSubstr("dp_rank 2"));
  // A vocab smaller than the ids in the shards names the first bad shard (shard 0 holds ids
  // 0..99, shard 1 starts at 100).
  o = Options(f);
  o.vocab_size = 100;
  EXPECT_THAT(DataLoader::Open(o).status().message(), HasSubstr("shard_1.bin: token 0"));
  // Too little data: 21 ranks for 20 samples, or a sample longer than any shard.
  o = Options(f);
  o.dp_size = 21;
  EXPECT_THAT(DataLoader::Open(o).status().message(), HasSubstr("need at least dp_size = 21"));
  o = Options(f, 100);
  EXPECT_THAT(DataLoader::Open(o).status().message(), HasSubstr("0 sample(s)"));
  // An empty glob names the pattern.
  o = Options(f);
  o.patterns = {f.dir + "/train_*.bin"};
  EXPECT_THAT(DataLoader::Open(o).status().message(), HasSubstr("train_*.bin"));
  // Wrongly sized output spans.
  auto loader = Open(Options(f));
  std::vector<int32_t> in(15), tg(16);
  EXPECT_FALSE(loader->NextBatch(2, absl::MakeSpan(in), absl::MakeSpan(tg)).ok());
}

// Shards with 32-bit ids (vocabularies above 65536) feed the same batches; ids beyond the
// model's vocabulary are refused at open.
TEST(DataLoaderTest, Reads32BitShards) {
  const testing::ScopedTempDir tmp;
  const std::string path = tmp.path() + "/train_000.bin";
  std::vector<uint32_t> ids(13);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 128000 + static_cast<uint32_t>(i) * 19;
  ASSERT_TRUE(WriteShard32(path, ids).ok());
  DataLoaderOptions o;
  o.patterns = {path};
  o.vocab_size = 128256;
  o.seq_len = 4;
  o.shuffle = false;
  auto loader = DataLoader::Open(o);
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ((*loader)->num_samples(), 3);
  std::vector<int32_t> in(8), tg(8);
  ASSERT_TRUE((*loader)->NextBatch(2, absl::MakeSpan(in), absl::MakeSpan(tg)).ok());
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(in[i], static_cast<int32_t>(ids[i]));
    EXPECT_EQ(tg[i], static_cast<int32_t>(ids[i + 1]));
  }
  o.vocab_size = 128200;
  auto small = DataLoader::Open(o);
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(small.status().message(), ::testing::HasSubstr("not below the vocab size 128200"));
}

}  // namespace
}  // namespace loom
