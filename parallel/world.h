// World: the processes of one job as MPI sees them. Initialises MPI once (MPI_Init_thread with
// MPI_THREAD_SERIALIZED: any thread may call MPI, one at a time; the MPI backend's lock sees to
// that for the data-parallel progress thread), gives each process its world rank, its
// node-local rank (MPI_Comm_split_type SHARED, which picks the GPU), the world Communicator and
// the CommState every communicator of the job shares, and makes sub-communicators for groups of
// ranks. A process started without mpirun is a world of one.
//
// CPU tensors and host scalars always travel over MPI. Once the world is given a device
// (Get(cuda) or UseCuda: a GPU, or a test device), its communicator and every later Split of
// more than one rank also get that device's backend for its tensors: NCCL for a GPU
// (parallel/nccl_backend.h), the stream backend for a test device
// (parallel/test_comm_backend.h). Groups of one rank get none: they need none.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/communicator.h"
#include "runtime/device.h"

namespace loom {

struct MpiCommHandle;  // mpi_backend.h: keeps mpi.h out of this header

class World {
 public:
  // Initialises MPI if needed. Safe to call more than once; returns the process's world. With
  // `cuda`, also UseCuda(cuda) (collective over the world).
  static absl::StatusOr<World*> Get(Device* cuda = nullptr);
  // A world of this process alone (rank 0 of 1, over MPI_COMM_SELF): for a reference run
  // inside a multi-rank job (tests comparing layouts) and for tools. Initialises MPI if needed.
  static World* Self();

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among the processes of this node, and how many there are.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  Communicator& comm() const { return *comm_; }
  const std::shared_ptr<CommState>& state() const { return state_; }
  // The device (GPU or test device) this process's device communicators run on; nullptr until
  // UseCuda.
  Device* cuda() const { return cuda_; }

  // Gives the world communicator a device backend on `cuda` (this process's GPU or test device,
  // chosen by local rank) and makes later Splits get one too. Collective over the world the first
  // time; again with the same device it does nothing, with another device it is an error. comm()
  // stays the same object.
  absl::Status UseCuda(Device* cuda);

  // A communicator over `members` (world ranks, in the order that gives their group ranks),
  // which must contain this rank. Collective over the whole world: every rank calls it at the
  // same point with the members of its own group, and the groups of one call partition the
  // world (as the tp, dp, pp groups of a rank grid do). The communicator gets an NCCL backend
  // on `cuda`, or on cuda() when that is null and UseCuda was called; every rank must pass the
  // same choice (all with a device or all without).
  absl::StatusOr<std::unique_ptr<Communicator>> Split(const std::string& name,
                                                      const std::vector<int>& members,
                                                      Device* cuda = nullptr) const;

  // Ends every rank of the job (used when one rank fails, so no peer hangs in a collective).
  [[noreturn]] void Abort(int code) const;

  // The watchdog's roll call (parallel/world_watchdog.cc), for a rank whose wait passed its
  // deadline, before it ends the job: asks every other rank where it is and collects answers
  // for `grace`. A rank inside any communicator wait answers (CommState::on_long_wait) with
  // the step and the operation it waits on; a rank that does not answer is stalled outside
  // communication (in compute), dead or hung elsewhere: the ones that did not arrive. Uses its
  // own duplicate of MPI_COMM_WORLD, so it never matches a message of the job's operations.
  // Nothing to ask in a world of one.
  struct RollCall {
    std::vector<std::pair<int, std::string>> waiting;  // (rank, "step 3: all_reduce ...")
    std::vector<int> silent;                           // ranks that did not answer
  };
  RollCall TakeRollCall(const std::string& what, absl::Duration grace) const;

 private:
  World() = default;
  static absl::StatusOr<World*> Create();  // the MPI_COMM_WORLD world, without NCCL
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::shared_ptr<MpiCommHandle> mpi_;    // MPI_COMM_WORLD or MPI_COMM_SELF
  std::shared_ptr<MpiCommHandle> watch_;  // the roll call's duplicate of MPI_COMM_WORLD
  // Answers pending roll calls (called from long waits and from TakeRollCall).
  void AnswerRollCalls(const std::string& what) const;
  std::shared_ptr<CommState> state_;
  std::unique_ptr<Communicator> comm_;
  Device* cuda_ = nullptr;
};

// Seconds the device collectives completed since the last call spent on their streams (NCCL's
// CUDA events on a GPU, the stream times of the test device's backend), per group name ("tp",
// "dp", ...); empty on the CPU, whose collectives block the host and are timed there.
std::map<std::string, double> TakeDeviceCommSeconds();

}  // namespace loom
