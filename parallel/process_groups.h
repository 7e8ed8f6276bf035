// ProcessGroups: this rank's communicators for every group of the rank grid (tp, dp, pp,
// model, embedding) plus the world, created once at start-up (a collective over the world, in a
// fixed order on every rank). Code that needs "the data-parallel group" asks this object; no
// module-level globals. A world of one gives size-1 groups whose operations cost nothing.
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
  // world->size(). With `cuda` (or when the world has one: World::UseCuda) every group of more
  // than one rank that moves device tensors (tp, dp, pp, embedding; not model, which carries
  // host scalars) also gets an NCCL backend on that device.
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
  Communicator& group(GroupKind kind) const { return *groups_[static_cast<int>(kind)]; }
  CommState& state() const { return world_->state(); }

 private:
  ProcessGroups(const RankGrid& grid) : grid_(grid) {}
  RankGrid grid_;
  GridCoord coord_;
  int rank_ = 0;
  Communicator* world_ = nullptr;
  std::unique_ptr<Communicator> groups_[5];
};

}  // namespace loom
