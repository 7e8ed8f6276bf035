// MpiWorld: the processes of one job as MPI sees them. Initialises MPI once (MPI_Init_thread
// with MPI_THREAD_FUNNELED, or reuses an MPI the caller already started), gives rank and size,
// and the whole-world collectives the data-parallel trainer needs on the CPU backend. A
// process started without mpirun is a world of one, with no MPI traffic at all.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace loom {

class MpiWorld {
 public:
  // Initialises MPI if needed. Safe to call more than once; returns the process's world.
  static absl::StatusOr<MpiWorld*> Get();
  // A world of this process alone (rank 0 of 1) whose collectives are no-ops: for a reference
  // run inside a multi-rank job (tests comparing layouts) and for tools.
  static MpiWorld* Self();
  int rank() const { return rank_; }
  int size() const { return size_; }

  // In place, over all ranks: data[i] = sum over ranks of data[i].
  absl::Status AllReduceSum(absl::Span<float> data);
  absl::Status AllReduceSum(absl::Span<double> data);
  absl::Status Barrier();
  // Ends every rank of the job (used when one rank fails, so no peer hangs in a collective).
  [[noreturn]] void Abort(int code);

 private:
  MpiWorld(int rank, int size) : rank_(rank), size_(size) {}
  int rank_;
  int size_;
};

}  // namespace loom
