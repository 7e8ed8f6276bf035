// ProcessGroups: this rank's communicators for every group of the rank grid (tp, dp, pp,
// model, embedding, cp, dpcp) plus the world, created once at start-up (a collective over the
// world, in a fixed order on every rank). Code that needs "the data-parallel group" asks this
// object; no module-level globals. A world of one gives size-1 groups whose operations cost
// nothing.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/rank_grid.h"
#include "parallel/world.h"

namespace loom {

class ProcessGroups {
 public:
  // `world` supplies the world communicator and the MPI splits; grid.world_size() must equal
  // world->size(). With `cuda` (a GPU or a test device; or when the world has one:
  // World::UseCuda) the groups that carry device tensors (tp, dp, pp, embedding) of more than
  // one rank also get that device's backend (NCCL on a GPU); the model group carries host
  // scalars only and gets none from `cuda`.
  static absl::StatusOr<std::unique_ptr<ProcessGroups>> Create(const World& world,
                                                               const RankGrid& grid,
                                                               Device* cuda = nullptr);

  const RankGrid& grid() const { return grid_; }
  const GridCoord& coord() const { return coord_; }
  int rank() const { return rank_; }
  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *groups_[0]; }
  Communicator& dp() const { return *groups_[1]; }
  Communicator& pp() const { return *groups_[2]; }
  Communicator& model() const { return *groups_[3]; }
  Communicator& embedding() const { return *groups_[4]; }
  // Context parallelism: the ring of ranks that split one sequence.
  Communicator& cp() const { return *groups_[5]; }
  // Every replica of the parameters (dp x cp): gradients are averaged and ZeRO-1 shards over
  // it. With cp == 1 this is the dp communicator itself (no second communicator is made).
  Communicator& dpcp() const { return groups_[6] ? *groups_[6] : dp(); }
  Communicator& group(GroupKind kind) const {
    return kind == GroupKind::kDpCp ? dpcp() : *groups_[static_cast<int>(kind)];
  }
  CommState& state() const { return world_->state(); }

 private:
  ProcessGroups(const RankGrid& grid) : grid_(grid) {}
  RankGrid grid_;
  GridCoord coord_;
  int rank_ = 0;
  Communicator* world_ = nullptr;
  std::unique_ptr<Communicator> groups_[7];
};

}  // namespace loom
