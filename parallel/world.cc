#include "parallel/world.h"

#include <mpi.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "parallel/mpi_backend.h"
#include "parallel/nccl_backend.h"
#include "parallel/test_comm_backend.h"
#include "runtime/host_wait.h"
#include "runtime/status.h"

namespace loom {

namespace {

absl::Status EnsureMpi() {
  int initialized = 0;
  LOOM_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) return absl::OkStatus();
  // Open MPI's nonblocking all-reduce (coll/libnbc, which MPI_Iallreduce uses) picks a binomial
  // reduce + broadcast for few ranks: at 2 ranks and 32-64 MB it reached ~70% of the busbw of
  // the blocking MPI_Allreduce in `loom bench comm`. Rabenseifner (reduce-scatter + all-gather,
  // each rank reduces 1/n of the data) reached >= 135% there. The user's own setting wins.
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", /*overwrite=*/0);
  // Started without a launcher (no mpirun/srun variables): a world of one that needs no
  // Open MPI daemon. By default Open MPI's singleton MPI_Init starts `orted`, which a machine
  // running loom from the GPU bundle does not have (scripts/gpu-check.sh); loom never spawns
  // processes, so the isolated singleton loses nothing.
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr && std::getenv("PMIX_RANK") == nullptr &&
      std::getenv("PMI_RANK") == nullptr) {
    setenv("OMPI_MCA_ess_singleton_isolated", "1", /*overwrite=*/0);
  }
  // SERIALIZED rather than FUNNELED: the data-parallel GradReducer drives MPI's progress from a
  // helper thread while backward computes (the MPI backend serialises its calls with a lock).
  // Open MPI enables its internal locking only for MPI_THREAD_MULTIPLE, so this costs nothing;
  // an MPI that provides less leaves ThreadSafeProgress() false and the reducer polls inline.
  int provided = 0;
  LOOM_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
  // Return errors as codes so they become Statuses instead of killing the process silently.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  std::atexit([] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  });
  return absl::OkStatus();
}

// The device's collective backend: NCCL for a GPU, the stream backend for a test device.
absl::StatusOr<std::unique_ptr<CommBackend>> MakeDeviceBackend(
    std::shared_ptr<MpiCommHandle> handle, std::shared_ptr<CommState> state, Device* device,
    const std::string& name = "") {
  if (device->is_test()) {
    return MakeTestCommBackend(std::move(handle), std::move(state), device, name);
  }
  return MakeNcclBackend(std::move(handle), std::move(state), device, name);
}

}  // namespace

absl::StatusOr<World*> World::Get(Device* cuda) {
  static World* world = nullptr;
  if (world == nullptr) {
    LOOM_ASSIGN_OR_RETURN(world, Create());
  }
  LOOM_RETURN_IF_ERROR(world->UseCuda(cuda));
  return world;
}

absl::StatusOr<World*> World::Create() {
  LOOM_RETURN_IF_ERROR(EnsureMpi());
  auto* w = new World();
  w->mpi_ = std::make_shared<MpiCommHandle>();
  w->mpi_->comm = MPI_COMM_WORLD;
  LOOM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w->rank_));
  LOOM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w->size_));
  // Node-local rank: the processes that share memory with this one.
  MPI_Comm node = MPI_COMM_NULL;
  LOOM_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank_, MPI_INFO_NULL, &node));
  LOOM_MPI_CHECK(MPI_Comm_rank(node, &w->local_rank_));
  LOOM_MPI_CHECK(MPI_Comm_size(node, &w->local_size_));
  MPI_Comm_free(&node);
  w->state_ = std::make_shared<CommState>();
  // Host waits on device work (runtime/host_wait.h) share the communicators' deadline, name
  // the same step and answer roll calls the same way.
  std::shared_ptr<CommState> state = w->state_;
  SetHostWaitPolicy(HostWaitPolicy{[state] { return state->timeout; },
                                   [state] { return state->step.load(); },
                                   [state](const std::string& what) {
                                     if (state->on_long_wait) state->on_long_wait(what);
                                   }});
  std::vector<int> members(w->size_);
  for (int r = 0; r < w->size_; ++r) members[r] = r;
  w->comm_ = std::make_unique<Communicator>("world", members, w->rank_, w->state_,
                                            MakeMpiBackend(w->mpi_, w->state_));
  if (w->size_ > 1) {
    w->watch_ = std::make_shared<MpiCommHandle>();
    w->watch_->owned = true;
    LOOM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &w->watch_->comm));
    MPI_Comm_set_errhandler(w->watch_->comm, MPI_ERRORS_RETURN);
    w->state_->on_long_wait = [w](const std::string& what) { w->AnswerRollCalls(what); };
    // A host blocked on device work answers too: SetHostWaitPolicy above routes its long
    // waits to state->on_long_wait.
  }
  return w;
}

absl::Status World::UseCuda(Device* cuda) {
  if (cuda == nullptr || cuda == cuda_) return absl::OkStatus();
  if (cuda_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("rank ", rank_, " already runs its NCCL communicators on ", cuda_->Name(),
                     "; it cannot also use ", cuda->Name(), " (one GPU per process)"));
  }
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<CommBackend> nccl, MakeDeviceBackend(mpi_, state_, cuda));
  // Assigned in place, so references to comm() taken earlier see the NCCL backend too.
  *comm_ = Communicator(comm_->name(), comm_->world_ranks(), comm_->rank(), state_,
                        MakeMpiBackend(mpi_, state_), std::move(nccl));
  cuda_ = cuda;
  return absl::OkStatus();
}

World* World::Self() {
  static World* self = [] {
    auto* w = new World();
    (void)EnsureMpi();
    w->mpi_ = std::make_shared<MpiCommHandle>();
    w->mpi_->comm = MPI_COMM_SELF;
    w->state_ = std::make_shared<CommState>();
    w->comm_ = std::make_unique<Communicator>("self", std::vector<int>{0}, 0, w->state_,
                                              MakeMpiBackend(w->mpi_, w->state_));
    return w;
  }();
  return self;
}

absl::StatusOr<std::unique_ptr<Communicator>> World::Split(const std::string& name,
                                                           const std::vector<int>& members,
                                                           Device* cuda) const {
  int index = -1;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == rank_) index = static_cast<int>(i);
  }
  if (index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("group ", name, " [", FormatRankList(members),
                                                   "] does not contain this rank (", rank_, ")"));
  }
  auto handle = std::make_shared<MpiCommHandle>();
  handle->owned = true;
  // Colour by the group's first member: the groups of one call partition the world, so each
  // group has a distinct first member; the key orders ranks as `members` does.
  LOOM_MPI_CHECK(MPI_Comm_split(mpi_->comm, members[0], index, &handle->comm));
  MPI_Comm_set_errhandler(handle->comm, MPI_ERRORS_RETURN);
  int size = 0;
  LOOM_MPI_CHECK(MPI_Comm_size(handle->comm, &size));
  if (size != static_cast<int>(members.size())) {
    return absl::InternalError(absl::StrCat(
        "group ", name, " [", FormatRankList(members), "]: MPI made a group of ", size,
        " ranks: the ranks did not agree on the groups (each rank must pass its own group, and "
        "the groups must partition the world)"));
  }
  std::unique_ptr<CommBackend> nccl;
  if (cuda == nullptr) cuda = cuda_;
  // A group of one rank moves nothing and needs no device backend (Communicator completes its
  // operations at once): no NCCL communicator, stream or memory for it.
  if (cuda != nullptr && members.size() > 1) {
    auto made = MakeDeviceBackend(handle, state_, cuda, name);
    if (!made.ok()) {
      return absl::Status(made.status().code(),
                          absl::StrCat("group ", name, " [", FormatRankList(members),
                                       "]: ", made.status().message()));
    }
    nccl = *std::move(made);
  }
  return std::make_unique<Communicator>(name, members, index, state_,
                                        MakeMpiBackend(handle, state_), std::move(nccl));
}

void World::Abort(int code) const {
  // NCCL kernels waiting for a peer would keep the GPU (and the process's exit) busy: abort
  // every communicator first, waiting at most a few seconds for it.
  AbortNcclCommunicators(absl::Seconds(5));
  if (size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

std::map<std::string, double> TakeDeviceCommSeconds() {
  std::map<std::string, double> seconds = TakeNcclDeviceSeconds();
  for (const auto& [group, s] : TakeTestCommDeviceSeconds()) seconds[group] += s;
  return seconds;
}

}  // namespace loom
