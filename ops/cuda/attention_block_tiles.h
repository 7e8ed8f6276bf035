// Index arithmetic of the CUDA ring-attention block kernels (ops/cuda/attention_block.cu): the
// global position of a block row and which 64-row tiles of one block can see which of the
// other. Host and device functions with no CUDA or absl dependency, so a CPU test
// (tests/ops/attention_block_tiles_test.cc) checks them against brute force on machines without
// a GPU.
//
// Promise: positions grow with the row inside a block (ops/attention_block.h), so
//   - the keys any query of a tile may see are a prefix [0, VisibleKeys) of the key block
//     (the prefix its last real row sees), and
//   - the queries that see a key are a suffix [FirstQueryRow, t) of the query block, and a
//     query that sees key j also sees every key before j: a key tile's queries start at the
//     first query row of its first key.
// Segment ids only remove keys from these ranges, never add any.
#pragma once

#include <cstdint>

#ifndef LOOM_HOST_DEVICE
#ifdef __CUDACC__
#define LOOM_HOST_DEVICE __host__ __device__
#else
#define LOOM_HOST_DEVICE
#endif
#endif

namespace loom::ops::cuda::block {

inline constexpr int kTile = 64;  // query rows and keys per tile, as in ops/cuda/attention.cu

// A block's 2 * chunk rows: rows [0, chunk) at start0.., rows [chunk, 2 chunk) at start1..
// (ChunkedPositions of ops/attention_block.h, in a form kernels can call).
struct Positions {
  int64_t chunk = 0, start0 = 0, start1 = 0;
  LOOM_HOST_DEVICE int64_t At(int64_t row) const {
    return row < chunk ? start0 + row : start1 + (row - chunk);
  }
  // Rows whose position is <= pos.
  LOOM_HOST_DEVICE int64_t CountThrough(int64_t pos) const {
    return Clamp(pos - start0 + 1) + Clamp(pos - start1 + 1);
  }

 private:
  LOOM_HOST_DEVICE int64_t Clamp(int64_t v) const { return v < 0 ? 0 : (v > chunk ? chunk : v); }
};

// Tiles of a block of t rows.
LOOM_HOST_DEVICE inline int NumTiles(int64_t t) {
  return static_cast<int>((t + kTile - 1) / kTile);
}

// How many leading key rows some query of query tile qt may see (0: the tile sees none).
LOOM_HOST_DEVICE inline int64_t VisibleKeys(const Positions& q, const Positions& k, int64_t t,
                                            int qt) {
  const int64_t end = (static_cast<int64_t>(qt) + 1) * kTile;
  const int64_t last = (end < t ? end : t) - 1;
  return k.CountThrough(q.At(last));
}

// The key tiles query tile qt visits: [0, KeyTilesFor).
LOOM_HOST_DEVICE inline int KeyTilesFor(const Positions& q, const Positions& k, int64_t t, int qt) {
  return static_cast<int>((VisibleKeys(q, k, t, qt) + kTile - 1) / kTile);
}

// The first query row that sees key row `key` (t when none does).
LOOM_HOST_DEVICE inline int64_t FirstQueryRow(const Positions& q, const Positions& k, int64_t key) {
  return q.CountThrough(k.At(key) - 1);
}

// The query tiles key tile kt is visited by: [FirstQueryTile, NumTiles(t)), empty when
// FirstQueryTile == NumTiles(t).
LOOM_HOST_DEVICE inline int FirstQueryTile(const Positions& q, const Positions& k, int64_t t,
                                           int kt) {
  const int64_t row = FirstQueryRow(q, k, static_cast<int64_t>(kt) * kTile);
  return row >= t ? NumTiles(t) : static_cast<int>(row / kTile);
}

}  // namespace loom::ops::cuda::block
