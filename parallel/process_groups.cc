#include "parallel/process_groups.h"

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<std::unique_ptr<ProcessGroups>> ProcessGroups::Create(const World& world,
                                                                     const RankGrid& grid,
                                                                     Device* cuda) {
  if (grid.world_size() != world.size()) {
    return absl::InvalidArgumentError(absl::StrCat("the rank grid has ", grid.world_size(),
                                                   " ranks but the job runs ", world.size()));
  }
  std::unique_ptr<ProcessGroups> g(new ProcessGroups(grid));
  g->rank_ = world.rank();
  g->coord_ = grid.CoordOf(world.rank());
  g->world_ = &world.comm();
  for (GroupKind kind : kAllGroupKinds) {
    // Only groups that move device tensors get NCCL (World::Split also skips groups of one):
    // the model group carries host scalars only (the gradient norm's sum of squares).
    Device* dev = kind == GroupKind::kModel ? nullptr : cuda;
    LOOM_ASSIGN_OR_RETURN(g->groups_[static_cast<int>(kind)],
                          world.Split(GroupKindName(kind), grid.Group(kind, world.rank()), dev));
  }
  return g;
}

}  // namespace loom
