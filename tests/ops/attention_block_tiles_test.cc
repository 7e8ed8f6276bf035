// The tile arithmetic of the CUDA ring-attention block kernels (ops/cuda/attention_block_tiles.h)
// against brute force, on the CPU (the kernels themselves need a GPU): for ring layouts (cp 1-4,
// every rank pair) and other chunk layouts, chunks smaller than, equal to and larger than a
// 64-row tile,
//   - the key tiles a query tile visits hold every key any of its rows sees, and the tile past
//     them holds none;
//   - the query tiles a key tile is visited by hold every query that sees any of its keys, and
//     the tile before them holds none;
//   - Positions matches ChunkedPositions.
// Also on random layouts (chunks of 1-100 rows, random starts and gaps).
#include "ops/cuda/attention_block_tiles.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "ops/attention_block.h"

namespace loom::ops {
namespace {

using cuda::block::FirstQueryTile;
using cuda::block::KeyTilesFor;
using cuda::block::kTile;
using cuda::block::NumTiles;
using cuda::block::Positions;

Positions Of(const ChunkedPositions& p) { return Positions{p.chunk, p.start0, p.start1}; }

void CheckPair(const ChunkedPositions& qc, const ChunkedPositions& kc) {
  SCOPED_TRACE(::testing::Message()
               << "q {" << qc.chunk << ", " << qc.start0 << ", " << qc.start1 << "} kv {"
               << kc.chunk << ", " << kc.start0 << ", " << kc.start1 << "}");
  const Positions q = Of(qc), k = Of(kc);
  const int64_t t = 2 * qc.chunk;
  const int tiles = NumTiles(t);
  ASSERT_EQ(tiles, (t + kTile - 1) / kTile);
  for (int64_t row = 0; row < t; ++row) {
    ASSERT_EQ(q.At(row), qc.At(row));
    for (int64_t pos = -1; pos <= qc.start1 + qc.chunk; ++pos) {
      ASSERT_EQ(q.CountThrough(pos), qc.CountThrough(pos));
    }
  }
  auto sees = [&](int64_t row, int64_t key) { return kc.At(key) <= qc.At(row); };
  // Brute force: per query tile the last key any row sees; per key tile the first row that
  // sees any of its keys.
  for (int qt = 0; qt < tiles; ++qt) {
    int64_t last_key = -1;
    for (int64_t row = int64_t{qt} * kTile; row < std::min<int64_t>(t, (qt + 1) * kTile); ++row) {
      for (int64_t key = 0; key < t; ++key) {
        if (sees(row, key)) last_key = std::max(last_key, key);
      }
    }
    const int want = last_key < 0 ? 0 : static_cast<int>(last_key / kTile) + 1;
    EXPECT_EQ(KeyTilesFor(q, k, t, qt), want) << "query tile " << qt;
  }
  for (int kt = 0; kt < tiles; ++kt) {
    int64_t first_row = t;
    for (int64_t key = int64_t{kt} * kTile; key < std::min<int64_t>(t, (kt + 1) * kTile); ++key) {
      for (int64_t row = 0; row < t; ++row) {
        if (sees(row, key)) first_row = std::min(first_row, row);
      }
    }
    const int want = first_row == t ? tiles : static_cast<int>(first_row / kTile);
    EXPECT_EQ(FirstQueryTile(q, k, t, kt), want) << "key tile " << kt;
  }
}

TEST(AttentionBlockTilesTest, RingLayoutsMatchBruteForce) {
  for (int cp = 1; cp <= 4; ++cp) {
    for (int64_t chunk : {int64_t{5}, int64_t{32}, int64_t{64}, int64_t{96}, int64_t{150}}) {
      const int64_t seq_len = 2 * cp * chunk;
      for (int r = 0; r < cp; ++r) {
        for (int o = 0; o < cp; ++o) {
          const ChunkedPositions qp{chunk, r * chunk, (2 * cp - 1 - r) * chunk};
          const ChunkedPositions kp{chunk, o * chunk, (2 * cp - 1 - o) * chunk};
          ASSERT_LE(qp.start1 + chunk, seq_len);
          CheckPair(qp, kp);
        }
      }
    }
  }
}

TEST(AttentionBlockTilesTest, OtherLayoutsMatchBruteForce) {
  // Every key visible, none visible, adjacent chunks, chunks with a gap, a shifted diagonal.
  const std::vector<std::pair<ChunkedPositions, ChunkedPositions>> pairs = {
      {{20, 40, 60}, {20, 0, 20}},
      {{20, 0, 20}, {20, 40, 60}},
      {{70, 0, 70}, {70, 0, 70}},
      {{40, 10, 200}, {40, 30, 100}},
      {{100, 50, 300}, {100, 0, 150}},
      {{33, 0, 500}, {33, 490, 600}},
      // The last row of a tile is the first to see a key tile's first key.
      {{32, 0, 100}, {32, 131, 200}},
  };
  for (const auto& [q, k] : pairs) CheckPair(q, k);
}

TEST(AttentionBlockTilesTest, RandomLayoutsMatchBruteForce) {
  std::mt19937 rng(7);
  auto layout = [&](int64_t chunk) {
    const int64_t start0 = std::uniform_int_distribution<int64_t>(0, 150)(rng);
    const int64_t gap = std::uniform_int_distribution<int64_t>(0, 150)(rng);
    return ChunkedPositions{chunk, start0, start0 + chunk + gap};
  };
  for (int i = 0; i < 150; ++i) {
    const int64_t chunk = std::uniform_int_distribution<int64_t>(1, 100)(rng);
    CheckPair(layout(chunk), layout(chunk));
  }
}

}  // namespace
}  // namespace loom::ops
