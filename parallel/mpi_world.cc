#include "parallel/mpi_world.h"

#include <mpi.h>

#include <cstdlib>

#include "runtime/status.h"

namespace loom {

absl::StatusOr<MpiWorld*> MpiWorld::Get() {
  static MpiWorld* world = nullptr;
  if (world != nullptr) return world;
  int initialized = 0;
  LOOM_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    LOOM_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    // Return errors as codes so they become Statuses instead of killing the process silently.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  }
  int rank = 0, size = 1;
  LOOM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  LOOM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  world = new MpiWorld(rank, size);
  return world;
}

MpiWorld* MpiWorld::Self() {
  static MpiWorld* self = new MpiWorld(0, 1);
  return self;
}

absl::Status MpiWorld::AllReduceSum(absl::Span<float> data) {
  if (size_ == 1 || data.empty()) return absl::OkStatus();
  LOOM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), MPI_FLOAT,
                               MPI_SUM, MPI_COMM_WORLD));
  return absl::OkStatus();
}

absl::Status MpiWorld::AllReduceSum(absl::Span<double> data) {
  if (size_ == 1 || data.empty()) return absl::OkStatus();
  LOOM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()),
                               MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  return absl::OkStatus();
}

absl::Status MpiWorld::Barrier() {
  if (size_ == 1) return absl::OkStatus();
  LOOM_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  return absl::OkStatus();
}

void MpiWorld::Abort(int code) {
  if (size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

}  // namespace loom
