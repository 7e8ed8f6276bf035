// NcclBackend: the CUDA side of a Communicator, over one NCCL communicator made for the ranks
// of one MPI communicator (the NCCL unique id is made on group rank 0 and broadcast over MPI).
// Built only with CUDA (nccl_backend.cc); a CPU-only build links nccl_backend_stub.cc, whose
// MakeNcclBackend returns Unavailable.
//
// Streams: each backend (one per communicator) issues its operations on its own non-blocking
// communication stream. One stream per communicator rather than one per device because NCCL
// needs each communicator's operations in the same order on all its members, but nothing
// orders operations of different communicators across ranks: on a shared stream a rank's tp
// collective could queue behind its dp collective while a peer issued them the other way round
// (pipeline schedules do), and the two would wait for each other forever. Separate streams
// also let a data-parallel gradient reduction overlap tensor-parallel traffic.
//
// Ordering, per operation: an event recorded on the ops' stream (ops/cuda/context.h
// DeviceContext::stream) when the operation is issued makes the communication stream wait, so
// the transfer sees everything the ops queued before it; an event recorded after the transfer
// is what CommWork::Wait makes the ops' stream wait on (the host does not block). The
// CommWork holds the tensors (and any temporary) until then: runtime/device.h states the
// allocator rule this keeps.
//
// Deadlines (CommState::timeout, from issue): where the host blocks (Barrier, the destructor of
// an unwaited CommWork, the backend's destructor) it polls cudaEventQuery and
// ncclCommGetAsyncError and returns DeadlineExceeded, worded as the MPI backend words it. Wait
// and Test do not block, but they look at every NCCL operation still in flight in the process
// (a cheap cudaEventQuery each) and report the first one past its deadline, so a stuck
// collective is named at the next wait of any communicator. A CommWork whose operation missed
// its deadline keeps its tensors for as long as the operation may still touch them.
//
// Hang safety beyond the backend's own waits: every host wait on device work
// (runtime/host_wait.h: the loss copy, the gradient norm, a snapshot) also checks the
// collectives in flight, so a copy stuck behind a stalled collective is reported as that
// collective (operation, group, step); the caching allocator frees its cache only once no
// collective is in flight (its release gate), since cudaFree waits for every stream; and the
// watchdog aborts every NCCL communicator of the process (AbortNcclCommunicators, from
// World::Abort) before the job ends, so no NCCL kernel keeps the GPU or the process alive.
//
// Times: each operation is bracketed by two pooled, timing-enabled events on its stream (the
// first recorded after the wait for the ops' stream), so the time it took on the GPU, waiting
// for peers included, is known (TakeNcclDeviceSeconds); the host's issue time is ~0 and says
// nothing.
//
// Types: reductions in f32, bf16, f16 and i32 (ncclAvg for ReduceOp::kAvg); copies (gathers,
// broadcast, send/recv) move any dtype as bytes. Counts are size_t: no INT_MAX limit.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/communicator.h"
#include "parallel/mpi_backend.h"
#include "runtime/device.h"

namespace loom {

// The NCCL backend for the ranks of `group->comm`, on `cuda_device` (which every later tensor
// of this backend must live on). Collective over `group`: every member calls it at the same
// point. Host scalars (AllReduceHost) go over `group`'s MPI communicator.
// `name` (the group's: "tp", "dp", ...) keys its device times.
absl::StatusOr<std::unique_ptr<CommBackend>> MakeNcclBackend(std::shared_ptr<MpiCommHandle> group,
                                                             std::shared_ptr<CommState> state,
                                                             Device* cuda_device,
                                                             const std::string& name = "");

// Calls ncclCommAbort on every NCCL communicator of this process (those of every group), from
// a helper thread, waiting at most `limit` for it. Returns how many were aborted (0 without
// NCCL). After it, every operation in flight reports Aborted and nothing is destroyed twice.
int AbortNcclCommunicators(absl::Duration limit);

// Seconds the NCCL operations completed since the last call spent on their streams, measured by
// CUDA events, per group name; empty without NCCL.
std::map<std::string, double> TakeNcclDeviceSeconds();

}  // namespace loom
