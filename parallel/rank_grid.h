// RankGrid: how the ranks of a job form the 4-D grid tp x cp x dp x pp, in Megatron's order:
// tensor ranks are contiguous (they share a node and its fast links), then context, then data,
// then pipeline: world rank = tp_rank + tp * (cp_rank + cp * (dp_rank + dp * pp_rank)).
// With cp = 1 (the default) this is the 3-D grid tp x dp x pp, rank for rank.
//
// One value, built once from the degrees and validated (tp * dp * pp == world size), answers
// every "which coordinates, which group" question for every rank; it knows nothing of MPI, so
// `loom config check --world-size N` and the tests can ask it about any rank of any job.
// Groups (member lists in world ranks, ordered by their rank within the group):
//   tp         same (dp, pp): the tensor-parallel peers of a layer;
//   dp         same (tp, pp): the data-parallel replicas that reduce gradients;
//   pp         same (tp, dp): the stages of one pipeline, in stage order;
//   model      same dp: tp x pp ranks that hold one whole model (gradient norm, checkpoints);
//   embedding  first and last stage of a pipeline with the same (tp, cp, dp), for tied
//              embeddings; {rank} alone when pp == 1 or for a middle stage (so the groups still
//              partition the world).
//   cp         same (tp, dp, pp): the context-parallel ranks that split one sequence (the ring
//              of ring attention, in cp-rank order);
//   dpcp       same (tp, pp): every replica of the parameters (dp x cp, cp fastest), the group
//              gradients are reduced over and ZeRO-1 shards over; equal to dp when cp == 1.
// The model group is tp x pp at one (cp, dp): one whole copy of the parameters.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loom {

struct GridCoord {
  int tp = 0, dp = 0, pp = 0;
  int cp = 0;  // last, so {tp, dp, pp} still initialises a cp = 0 coordinate
  bool operator==(const GridCoord&) const = default;
};

enum class GroupKind { kTp, kDp, kPp, kModel, kEmbedding, kCp, kDpCp };
inline constexpr GroupKind kAllGroupKinds[] = {GroupKind::kTp,        GroupKind::kDp,
                                               GroupKind::kPp,        GroupKind::kModel,
                                               GroupKind::kEmbedding, GroupKind::kCp,
                                               GroupKind::kDpCp};
// "tp", "dp", "pp", "model", "embedding", "cp", "dpcp"
const char* GroupKindName(GroupKind kind);

class RankGrid {
 public:
  // Refuses degrees < 1 and a product different from world_size, naming the numbers.
  static absl::StatusOr<RankGrid> Create(int world_size, int tp, int dp, int pp, int cp = 1);

  int world_size() const { return tp_ * cp_ * dp_ * pp_; }
  int tp() const { return tp_; }
  int cp() const { return cp_; }
  int dp() const { return dp_; }
  int pp() const { return pp_; }

  GridCoord CoordOf(int rank) const;
  int RankOf(const GridCoord& c) const { return c.tp + tp_ * (c.cp + cp_ * (c.dp + dp_ * c.pp)); }
  // The members of `rank`'s group of this kind, in group-rank order.
  std::vector<int> Group(GroupKind kind, int rank) const;
  // Every group of this kind, each once, ordered by first member (they partition the world).
  std::vector<std::vector<int>> AllGroups(GroupKind kind) const;
  // "dp 1 pp 0 tp 1", the order log lines use ("dp 1 pp 0 tp 1 cp 0" when cp > 1).
  std::string CoordString(int rank) const;
  // One line per rank: coordinates and the members of each group. For worlds larger than
  // `max_ranks` the first ranks are listed and the rest summarised by the rule that generates
  // them (the pattern, not thousands of lines).
  std::string Describe(int max_ranks = 16) const;

 private:
  RankGrid(int tp, int dp, int pp, int cp) : tp_(tp), dp_(dp), pp_(pp), cp_(cp) {}
  int tp_ = 1, dp_ = 1, pp_ = 1, cp_ = 1;
};

}  // namespace loom
