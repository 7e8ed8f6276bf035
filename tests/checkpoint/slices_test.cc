// The slice plan: flat ranges cut into global boxes, and over a whole (dp, tp) grid every
// element of every tensor saved exactly once per kind, each box pointing at the right elements
// of the rank's buffers (the buffers hold each element's global index, so a wrong offset shows).
#include "checkpoint/slices.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(SlicesTest, CutsAFlatRangeIntoRowBoxes) {
  ParamDesc d;
  d.name = "w";
  d.shape = Shape{4, 5};
  auto table = ParamTable::Create({d});
  ASSERT_TRUE(table.ok());
  const ParamSpec& s = table->specs()[0];
  auto r = CutFlatRange(s, 3, 17);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ(BoxString((*r)[0].box), "[0:1, 3:5]");
  EXPECT_EQ((*r)[0].at, 3);
  EXPECT_EQ(BoxString((*r)[1].box), "[1:3, 0:5]");
  EXPECT_EQ((*r)[1].at, 5);
  EXPECT_EQ(BoxString((*r)[2].box), "[3:4, 0:2]");
  EXPECT_EQ((*r)[2].at, 15);
  // Inside one row.
  r = CutFlatRange(s, 6, 8);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(BoxString((*r)[0].box), "[1:2, 1:3]");
}

std::vector<ParamDesc> Descs() {
  std::vector<ParamDesc> v(5);
  v[0] = {"col", Shape{8, 3}, TpSplit::kColumn};
  v[1] = {"row", Shape{3, 8}, TpSplit::kRow};
  v[2] = {"rep", Shape{7}, TpSplit::kReplicated};
  v[3] = {"vocab", Shape{10, 3}, TpSplit::kVocab};
  v[3].zero_rows_from = 9;
  v[4] = {"bias", Shape{8}, TpSplit::kColumn};
  return v;
}

// Global row-major index of each element of the rank's flat buffer.
std::vector<double> GlobalIndexBuffer(const ParamTable& t) {
  std::vector<double> buf(t.total());
  for (const ParamSpec& s : t.specs()) {
    int64_t at = s.offset;
    const int64_t cols = s.global_shape.rank() == 2 ? s.global_shape[1] : 1;
    for (const TensorBox& p : s.pieces) {
      const int64_t rows = p.extent[0], pc = p.extent.size() == 2 ? p.extent[1] : 1;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < pc; ++c) {
          buf[at++] = (p.offset[0] + r) * cols + (p.extent.size() == 2 ? p.offset[1] + c : 0);
        }
      }
    }
  }
  return buf;
}

void CheckGrid(bool sharded) {
  const int tp = 2, dp = 3;
  std::map<std::pair<std::string, int>, std::vector<int>> counts;
  for (int t = 0; t < tp; ++t) {
    auto table = ParamTable::Create(Descs(), tp, t);
    ASSERT_TRUE(table.ok()) << table.status();
    const std::vector<double> local = GlobalIndexBuffer(*table);
    for (int d = 0; d < dp; ++d) {
      OptimizerView o;
      o.sharded = sharded;
      if (sharded) {
        // Uneven shards across parameter boundaries, two ranges per rank.
        const int64_t n = table->total(), half = n / 2;
        auto shard = [&](int64_t b, int64_t e) {
          const int64_t len = e - b, per = (len + dp - 1) / dp;
          return FlatRange{std::min(e, b + d * per), std::min(e, b + (d + 1) * per)};
        };
        for (FlatRange r : {shard(0, half), shard(half, n)}) {
          if (r.size() > 0) o.owned.push_back(r);
        }
      } else {
        o.owned = {{0, table->total()}};
      }
      std::vector<double> packed;
      for (const FlatRange& r : o.owned) {
        packed.insert(packed.end(), local.begin() + r.begin, local.begin() + r.end);
      }
      auto regions = SavedRegions(*table, GridCoord{t, d, 0}, o, dp);
      ASSERT_TRUE(regions.ok()) << regions.status();
      for (const Region& r : *regions) {
        const std::vector<double>& buf = r.kind == WEIGHTS ? local : packed;
        auto& c = counts[{r.spec->name, static_cast<int>(r.kind)}];
        c.resize(r.spec->global_shape.numel());
        const int64_t cols = r.spec->global_shape.rank() == 2 ? r.spec->global_shape[1] : 1;
        int64_t k = 0;
        const int64_t rows = r.box.extent[0], bc = r.box.extent.size() == 2 ? r.box.extent[1] : 1;
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t j = 0; j < bc; ++j, ++k) {
            const int64_t g = r.box.extent.size() == 2
                                  ? (r.box.offset[0] + i) * cols + r.box.offset[1] + j
                                  : r.box.offset[0] + i;
            ASSERT_EQ(buf[r.at + k], g) << r.spec->name << " " << KindName(r.kind) << " box "
                                        << BoxString(r.box) << " element " << k;
            ++c[g];
          }
        }
      }
    }
  }
  for (const ParamDesc& d : Descs()) {
    for (CheckpointKind kind : {WEIGHTS, ADAM_M, ADAM_V}) {
      const auto& c = counts[{d.name, static_cast<int>(kind)}];
      ASSERT_EQ(c.size(), static_cast<size_t>(d.shape.numel())) << d.name << " " << KindName(kind);
      for (size_t i = 0; i < c.size(); ++i) {
        EXPECT_EQ(c[i], 1) << d.name << " " << KindName(kind) << " element " << i
                           << (sharded ? " (distributed optimizer)" : " (plain optimizer)");
      }
    }
  }
}

TEST(SlicesTest, EveryElementSavedOncePlain) { CheckGrid(false); }
TEST(SlicesTest, EveryElementSavedOnceSharded) { CheckGrid(true); }

// Replicated state (the weights; the plain optimizer's moments) is written by every dp replica,
// each its 1/dp share, not by dp rank 0 alone (issue 19: a slow save on one rank while the
// others wait).
TEST(SlicesTest, ReplicatedStateIsSpreadOverTheDpReplicas) {
  auto table = ParamTable::Create(Descs());
  ASSERT_TRUE(table.ok());
  OptimizerView o;
  o.owned = {{0, table->total()}};
  const int dp = 4;
  for (int d = 0; d < dp; ++d) {
    auto regions = SavedRegions(*table, GridCoord{0, d, 0}, o, dp);
    ASSERT_TRUE(regions.ok()) << regions.status();
    std::map<int, int64_t> elements;
    for (const Region& r : *regions) elements[r.kind] += r.box.numel();
    for (CheckpointKind kind : {WEIGHTS, ADAM_M, ADAM_V}) {
      EXPECT_NEAR(static_cast<double>(elements[kind]), table->total() / static_cast<double>(dp),
                  1.0)
          << "dp rank " << d << " " << KindName(kind);
    }
  }
}

TEST(SlicesTest, TiedCopiesAreNotSaved) {
  std::vector<ParamDesc> v = Descs();
  v[3].tied_copy = true;
  auto table = ParamTable::Create(v);
  ASSERT_TRUE(table.ok());
  OptimizerView o;
  o.owned = {{0, table->total()}};
  auto regions = SavedRegions(*table, GridCoord{}, o, 1);
  ASSERT_TRUE(regions.ok());
  for (const Region& r : *regions) EXPECT_NE(r.spec->name, "vocab");
  auto needed = NeededRegions(*table, o, true);
  ASSERT_TRUE(needed.ok());
  bool loads = false;
  for (const Region& r : *needed) loads |= r.spec->name == "vocab";
  EXPECT_TRUE(loads) << "a tied copy must be loaded from its primary's slices";
}

}  // namespace
}  // namespace loom
