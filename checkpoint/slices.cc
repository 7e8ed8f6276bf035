#include "checkpoint/slices.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace loom {

const char* KindName(CheckpointKind kind) {
  switch (kind) {
    case WEIGHTS:
      return "weights";
    case MASTER:
      return "master";
    case ADAM_M:
      return "adam_m";
    case ADAM_V:
      return "adam_v";
    default:
      return "unknown";
  }
}

TensorBox Intersect(const TensorBox& a, const TensorBox& b) {
  TensorBox r;
  const size_t n = std::min(a.offset.size(), b.offset.size());
  for (size_t d = 0; d < n; ++d) {
    const int64_t lo = std::max(a.offset[d], b.offset[d]);
    const int64_t hi = std::min(a.offset[d] + a.extent[d], b.offset[d] + b.extent[d]);
    r.offset.push_back(lo);
    r.extent.push_back(std::max<int64_t>(0, hi - lo));
  }
  return r;
}

std::string BoxString(const TensorBox& box) {
  std::vector<std::string> dims;
  for (size_t d = 0; d < box.offset.size(); ++d) {
    dims.push_back(absl::StrCat(box.offset[d], ":", box.offset[d] + box.extent[d]));
  }
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

absl::StatusOr<std::vector<Region>> CutFlatRange(const ParamSpec& spec, int64_t begin,
                                                 int64_t end) {
  std::vector<Region> out;
  if (spec.global_shape.rank() < 1 || spec.global_shape.rank() > 2) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: parameter ", spec.name,
                                                   " has shape ", spec.global_shape.ToString(),
                                                   "; only 1-D and 2-D parameters are supported"));
  }
  begin = std::max(begin, spec.offset);
  end = std::min(end, spec.offset + spec.numel());
  int64_t piece_at = spec.offset;  // flat offset of the current piece's first element
  for (const TensorBox& piece : spec.pieces) {
    const int64_t n = piece.numel();
    const int64_t lo = std::max(begin, piece_at), hi = std::min(end, piece_at + n);
    if (lo < hi) {
      auto add = [&](TensorBox box, int64_t at) {
        Region r;
        r.spec = &spec;
        r.box = std::move(box);
        r.at = at;
        out.push_back(std::move(r));
      };
      if (piece.extent.size() == 1) {
        add(TensorBox{{piece.offset[0] + (lo - piece_at)}, {hi - lo}}, lo);
      } else {
        const int64_t cols = piece.extent[1];
        int64_t a = lo - piece_at;  // element index within the piece
        const int64_t b = hi - piece_at;
        // A partial first row.
        if (a % cols != 0) {
          const int64_t row = a / cols, col = a % cols;
          const int64_t stop = std::min(b, (row + 1) * cols);
          add(TensorBox{{piece.offset[0] + row, piece.offset[1] + col}, {1, stop - a}},
              piece_at + a);
          a = stop;
        }
        // Whole rows.
        const int64_t rows = (b - a) / cols;
        if (a < b && rows > 0) {
          add(TensorBox{{piece.offset[0] + a / cols, piece.offset[1]}, {rows, cols}}, piece_at + a);
          a += rows * cols;
        }
        // A partial last row.
        if (a < b) {
          add(TensorBox{{piece.offset[0] + a / cols, piece.offset[1]}, {1, b - a}}, piece_at + a);
        }
      }
    }
    piece_at += n;
  }
  return out;
}

namespace {

// Cuts every owned range over every parameter (with `keep` deciding which parameters), one
// Region per box for each of `kinds`, `at` in packed coordinates. Only the packed elements in
// [window.begin, window.end) (the whole of them by default).
template <typename Keep>
absl::Status CutOwned(const ParamTable& table, const std::vector<FlatRange>& owned,
                      const std::vector<CheckpointKind>& kinds, Keep keep, std::vector<Region>* out,
                      FlatRange window = {0, std::numeric_limits<int64_t>::max()}) {
  int64_t packed = 0;
  for (const FlatRange& full : owned) {
    // The part of this range inside the window, in flat coordinates.
    const FlatRange r{
        full.begin + std::max<int64_t>(0, window.begin - packed),
        full.begin + std::min(full.size(), std::max<int64_t>(0, window.end - packed))};
    for (const ParamSpec& s : table.specs()) {
      if (r.begin >= r.end) break;
      if (s.offset >= r.end || s.offset + s.numel() <= r.begin || !keep(s)) continue;
      LOOM_ASSIGN_OR_RETURN(std::vector<Region> boxes, CutFlatRange(s, r.begin, r.end));
      for (const CheckpointKind kind : kinds) {
        for (Region b : boxes) {
          b.kind = kind;
          b.at = packed + (b.at - full.begin);
          out->push_back(std::move(b));
        }
      }
    }
    packed += full.size();
  }
  return absl::OkStatus();
}

// dp rank `d`'s share of n elements replicated over `dp` ranks: one contiguous range each.
FlatRange ShareOf(int64_t n, int d, int dp) { return FlatRange{n * d / dp, n * (d + 1) / dp}; }

std::vector<CheckpointKind> OptimizerKinds(const OptimizerView& o) {
  if (o.separate_master) return {MASTER, ADAM_M, ADAM_V};
  return {ADAM_M, ADAM_V};
}

}  // namespace

absl::StatusOr<std::vector<Region>> SavedRegions(const ParamTable& table, const GridCoord& coord,
                                                 const OptimizerView& optimizer, int dp_size) {
  if (dp_size < 1 || coord.dp < 0 || coord.dp >= dp_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("SavedRegions: dp rank ", coord.dp, " of a data-parallel size ", dp_size));
  }
  std::vector<Region> out;
  auto mine = [&](const ParamSpec& s) { return OwnsParam(s, coord.tp); };
  // Replicated over dp: each dp rank writes its contiguous share of the flat buffer, so that
  // save time falls as dp grows (as DCP's planner spreads replicated tensors).
  const FlatRange weights = ShareOf(table.total(), coord.dp, dp_size);
  for (const ParamSpec& s : table.specs()) {
    if (!mine(s)) continue;
    const int64_t lo = std::max(s.offset, weights.begin);
    const int64_t hi = std::min(s.offset + s.numel(), weights.end);
    if (lo >= hi) continue;
    LOOM_ASSIGN_OR_RETURN(std::vector<Region> boxes, CutFlatRange(s, lo, hi));
    for (Region& b : boxes) out.push_back(std::move(b));  // kind WEIGHTS, at = flat offset
  }
  if (optimizer.sharded) {
    LOOM_RETURN_IF_ERROR(CutOwned(table, optimizer.owned, OptimizerKinds(optimizer), mine, &out));
  } else {
    int64_t packed = 0;
    for (const FlatRange& r : optimizer.owned) packed += r.size();
    LOOM_RETURN_IF_ERROR(CutOwned(table, optimizer.owned, OptimizerKinds(optimizer), mine, &out,
                                  ShareOf(packed, coord.dp, dp_size)));
  }
  return out;
}

absl::StatusOr<std::vector<Region>> NeededRegions(const ParamTable& table,
                                                  const OptimizerView& optimizer,
                                                  bool with_optimizer) {
  std::vector<Region> out;
  for (const ParamSpec& s : table.specs()) {
    LOOM_ASSIGN_OR_RETURN(std::vector<Region> boxes,
                          CutFlatRange(s, s.offset, s.offset + s.numel()));
    for (Region& b : boxes) out.push_back(std::move(b));
  }
  if (with_optimizer) {
    LOOM_RETURN_IF_ERROR(CutOwned(
        table, optimizer.owned, OptimizerKinds(optimizer), [](const ParamSpec&) { return true; },
        &out));
  }
  return out;
}

}  // namespace loom
