// Which boxes of which global tensors a rank saves, and which it needs when it loads: the plan
// both directions of a sharded checkpoint share. Knows the parameter table and the rank's grid
// coordinates, nothing of GPT.
//
// A Region is a box of one global tensor whose elements lie contiguously (row-major) in one of
// the rank's buffers: the weights (at the table's flat offsets) or the optimizer's packed state
// (master weights, AdamW m and v, stored back to back over its owned ranges). A flat range of a
// parameter's local storage is cut into such boxes along its pieces: a partial first row, the
// whole rows, a partial last row; so a slice in a checkpoint is always a global-coordinate box.
//
// Who saves what (each element of the model state exactly once over the world):
//   - nothing of a pipeline stage's tied copy (ParamSpec::tied_copy; its primary is saved);
//   - a parameter replicated over the tensor group only on tensor rank 0;
//   - the weights (replicated over dp): each dp rank its share, a contiguous 1/dp of the flat
//     buffer, so the writing is spread over the replicas (as DCP's planner does);
//   - master weights (bf16 models only) and both moments: with the distributed optimizer every
//     dp rank its owned ranges; with the plain one (replicated over dp) each dp rank a 1/dp
//     share of the packed buffers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/adamw.h"
#include "parallel/param_table.h"
#include "parallel/rank_grid.h"
#include "proto/checkpoint.pb.h"

namespace loom {

struct Region {
  const ParamSpec* spec = nullptr;
  CheckpointKind kind = WEIGHTS;
  TensorBox box;   // in the global tensor
  int64_t at = 0;  // element offset of the box's first element in the kind's buffer
};

// Boxes covering elements [begin, end) of the table's flat buffer that belong to `spec`
// (clipped to the spec), in storage order; Region::at is the flat buffer offset. Parameters of
// rank 1 and 2 only (InvalidArgument naming the tensor otherwise).
absl::StatusOr<std::vector<Region>> CutFlatRange(const ParamSpec& spec, int64_t begin, int64_t end);

// What the optimizer state looks like to the planner: the flat ranges it owns, packed in this
// order in its buffers, whether they are sharded over dp, and whether it keeps separate fp32
// master weights (bf16 models).
struct OptimizerView {
  std::vector<FlatRange> owned;
  bool sharded = false;
  bool separate_master = false;
};

// The regions this rank writes (see the file comment); dp_size: the data-parallel size.
absl::StatusOr<std::vector<Region>> SavedRegions(const ParamTable& table, const GridCoord& coord,
                                                 const OptimizerView& optimizer, int dp_size);

// The regions this rank must fill on load: every piece of every parameter (weights, tied
// copies included) and, when `with_optimizer`, the owned ranges of master (if separate) and
// both moments.
absl::StatusOr<std::vector<Region>> NeededRegions(const ParamTable& table,
                                                  const OptimizerView& optimizer,
                                                  bool with_optimizer);

// Shared box helpers.
TensorBox Intersect(const TensorBox& a, const TensorBox& b);  // empty extents when disjoint
std::string BoxString(const TensorBox& box);                  // "[0:4, 8:16]"
const char* KindName(CheckpointKind kind);                    // "weights", "master", "adam_m", ...

}  // namespace loom
