// MpiBackend: the CPU side of a Communicator, over one MPI communicator. Every operation is
// MPI's nonblocking form (MPI_Iallreduce, MPI_Ireduce_scatter_block, MPI_Iallgather(v),
// MPI_Ibcast, MPI_Isend/Irecv, MPI_Ibarrier); waits poll MPI_Testall against the deadline in
// the shared CommState, spinning briefly and then yielding the core, so an oversubscribed job
// (more ranks than cores) does not starve the rank it waits for.
//
// Threads: every MPI call of every MpiBackend holds one process-wide lock, so with MPI at
// MPI_THREAD_SERIALIZED (World asks for it) Progress() may run on a helper thread while another
// thread posts, tests and waits (ThreadSafeProgress()). MPI calls made elsewhere (set-up, tests)
// must not overlap a helper thread's Progress(); GradReducer runs its thread only between a
// bucket's launch and Finish().
//
// Element counts above INT_MAX are split into several requests for the element-wise operations
// (all-reduce, broadcast, send/recv); gathers and reduce-scatters refuse them per member with a
// message. bf16/f16/u16 move as 16-bit words; only f32 and i32 reduce.
#pragma once

#include <mpi.h>

#include <memory>
#include <mutex>

#include "parallel/communicator.h"

namespace loom {

// An MPI communicator; frees it on destruction when `owned` (and MPI is still running).
struct MpiCommHandle {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owned = false;
  ~MpiCommHandle();
};

// The lock every MPI call of the process takes (MPI runs at MPI_THREAD_SERIALIZED: one call at
// a time, from any thread). Code that calls MPI outside the backend while another thread may be
// inside it (the watchdog's roll call while the test device's stream workers run collectives)
// holds it too.
std::mutex& MpiCallMutex();

// The backend over `handle->comm`, which it keeps alive.
std::unique_ptr<CommBackend> MakeMpiBackend(std::shared_ptr<MpiCommHandle> handle,
                                            std::shared_ptr<CommState> state);

}  // namespace loom
