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
    // dp x cp is the dp group itself when cp == 1 (the same on every rank, so no rank splits).
    if (kind == GroupKind::kDpCp && grid.cp() == 1) continue;
    // The model group carries host scalars only (the gradient norm's sum): no device backend,
    // so no NCCL communicator (and its buffers) for it.
    Device* device = kind == GroupKind::kModel ? nullptr : cuda;
    LOOM_ASSIGN_OR_RETURN(g->groups_[static_cast<int>(kind)],
                          world.Split(GroupKindName(kind), grid.Group(kind, world.rank()), device));
  }
  return g;
}

}  // namespace loom
