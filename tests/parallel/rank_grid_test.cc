// RankGrid without MPI: Megatron's order (tensor ranks contiguous, then data, then pipeline),
// every kind of group partitions the world, the embedding groups pair first and last stages,
// refusals name the numbers, and Describe prints the pattern (not every rank) for large worlds.
#include <algorithm>
#include <set>
#include <tuple>

#include "gtest/gtest.h"
#include "parallel/rank_grid.h"

namespace loom {
namespace {

TEST(RankGridTest, MegatronOrderTensorThenDataThenPipeline) {
  auto g = RankGrid::Create(8, 2, 2, 2);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->CoordOf(5), (GridCoord{1, 0, 1}));  // 5 = 1 + 2 * (0 + 2 * 1)
  for (int r = 0; r < 8; ++r) EXPECT_EQ(g->RankOf(g->CoordOf(r)), r);
  EXPECT_EQ(g->Group(GroupKind::kTp, 5), (std::vector<int>{4, 5}));
  EXPECT_EQ(g->Group(GroupKind::kDp, 5), (std::vector<int>{5, 7}));
  EXPECT_EQ(g->Group(GroupKind::kPp, 5), (std::vector<int>{1, 5}));
  EXPECT_EQ(g->Group(GroupKind::kModel, 5), (std::vector<int>{0, 1, 4, 5}));
  EXPECT_EQ(g->Group(GroupKind::kEmbedding, 5), (std::vector<int>{1, 5}));
  EXPECT_EQ(g->CoordString(5), "dp 0 pp 1 tp 1");
}

TEST(RankGridTest, EveryKindOfGroupPartitionsTheWorld) {
  for (auto [tp, dp, pp] : {std::tuple{2, 3, 4}, {1, 1, 1}, {8, 1, 2}, {1, 5, 1}}) {
    auto g = RankGrid::Create(tp * dp * pp, tp, dp, pp);
    ASSERT_TRUE(g.ok());
    for (GroupKind k : kAllGroupKinds) {
      std::set<int> seen;
      for (const auto& members : g->AllGroups(k)) {
        for (int r : members) {
          EXPECT_TRUE(seen.insert(r).second) << GroupKindName(k) << " rank " << r << " twice";
          EXPECT_EQ(g->Group(k, r), members) << GroupKindName(k);
        }
      }
      EXPECT_EQ(static_cast<int>(seen.size()), g->world_size()) << GroupKindName(k);
    }
  }
  // pp 4: middle stages are alone in their embedding group; first and last are paired.
  auto g = RankGrid::Create(4, 1, 1, 4);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->Group(GroupKind::kEmbedding, 1), (std::vector<int>{1}));
  EXPECT_EQ(g->Group(GroupKind::kEmbedding, 3), (std::vector<int>{0, 3}));
}

// tp fastest, then cp, dp, pp: world rank = tp + tp * (cp + cp * (dp + dp * pp)).
TEST(RankGridTest, ContextRanksSitBetweenTensorAndDataRanks) {
  auto g = RankGrid::Create(16, /*tp=*/2, /*dp=*/2, /*pp=*/2, /*cp=*/2);
  ASSERT_TRUE(g.ok()) << g.status();
  // 11 = 1 + 2 * (1 + 2 * (0 + 2 * 1)): tp 1, cp 1, dp 0, pp 1.
  EXPECT_EQ(g->CoordOf(11), (GridCoord{1, 0, 1, 1}));
  for (int r = 0; r < 16; ++r) EXPECT_EQ(g->RankOf(g->CoordOf(r)), r);
  EXPECT_EQ(g->Group(GroupKind::kTp, 11), (std::vector<int>{10, 11}));
  EXPECT_EQ(g->Group(GroupKind::kCp, 11), (std::vector<int>{9, 11}));
  EXPECT_EQ(g->Group(GroupKind::kDp, 11), (std::vector<int>{11, 15}));
  EXPECT_EQ(g->Group(GroupKind::kPp, 11), (std::vector<int>{3, 11}));
  EXPECT_EQ(g->Group(GroupKind::kDpCp, 11), (std::vector<int>{9, 11, 13, 15}));
  // One whole model: tp x pp at this (cp, dp).
  EXPECT_EQ(g->Group(GroupKind::kModel, 11), (std::vector<int>{2, 3, 10, 11}));
  EXPECT_EQ(g->CoordString(11), "dp 0 pp 1 tp 1 cp 1");
  // The names communicators (and so deadline errors and the watchdog's roll call) carry.
  EXPECT_STREQ(GroupKindName(GroupKind::kCp), "cp");
  EXPECT_STREQ(GroupKindName(GroupKind::kDpCp), "dpcp");
  for (GroupKind k : kAllGroupKinds) {
    std::set<int> seen;
    for (const auto& members : g->AllGroups(k)) {
      for (int r : members) EXPECT_TRUE(seen.insert(r).second) << GroupKindName(k) << " " << r;
    }
    EXPECT_EQ(static_cast<int>(seen.size()), 16) << GroupKindName(k);
  }
  const std::string d = g->Describe();
  EXPECT_NE(d.find("tp 2 x cp 2 x dp 2 x pp 2 = 16"), std::string::npos) << d;
  EXPECT_NE(d.find("cp [9,11]"), std::string::npos) << d;
  // cp 1 is the 3-D grid rank for rank, and dpcp is dp.
  auto flat = RankGrid::Create(8, 2, 2, 2, 1);
  auto old = RankGrid::Create(8, 2, 2, 2);
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(flat->CoordOf(r), old->CoordOf(r));
    EXPECT_EQ(flat->Group(GroupKind::kDpCp, r), old->Group(GroupKind::kDp, r));
    EXPECT_EQ(flat->Group(GroupKind::kCp, r), (std::vector<int>{r}));
  }
  auto bad = RankGrid::Create(12, 2, 2, 1, 2);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tp x cp x dp x pp = 2 x 2 x 2 x 1 = 8"),
            std::string::npos)
      << bad.status();
}

TEST(RankGridTest, RefusesDegreesThatDoNotFillTheWorld) {
  auto g = RankGrid::Create(6, 2, 2, 2);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("6 ranks"), std::string::npos) << g.status();
  EXPECT_NE(g.status().message().find("2 x 2 x 2 = 8"), std::string::npos) << g.status();
  EXPECT_FALSE(RankGrid::Create(4, 0, 4, 1).ok());
}

TEST(RankGridTest, DescribeListsSmallWorldsAndSummarisesLargeOnes) {
  auto small = RankGrid::Create(4, 2, 2, 1);
  ASSERT_TRUE(small.ok());
  const std::string s = small->Describe();
  EXPECT_NE(s.find("rank 3: dp 1 pp 0 tp 1  tp [2,3]  dp [1,3]"), std::string::npos) << s;
  auto big = RankGrid::Create(4096, 8, 64, 8);
  ASSERT_TRUE(big.ok());
  const std::string b = big->Describe(16);
  EXPECT_LT(std::count(b.begin(), b.end(), '\n'), 20) << b;
  EXPECT_NE(b.find("4080 more ranks"), std::string::npos) << b;
  EXPECT_NE(b.find("rank 4095: dp 63 pp 7 tp 7"), std::string::npos) << b;
}

}  // namespace
}  // namespace loom
