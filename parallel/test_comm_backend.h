// TestCommBackend: the test device's side of a Communicator (runtime/test_device.h), built to
// behave as the NCCL backend does, so the control path above it is the one a GPU takes:
// - Each backend has its own communication stream (a worker thread of the device) and its own
//   duplicate of the group's MPI communicator, so device collectives never interleave with the
//   host scalars the group's MPI communicator carries, nor with another group's collectives
//   (the reasons nccl_backend.h gives for one stream per communicator).
// - Ordering, per operation: the communication stream first waits for the ops' stream as it
//   was when the operation was issued, then runs the MPI operation; CommWork::Wait makes the
//   ops' stream wait for its completion and returns at once: the host never blocks. Leave out
//   either wait and the numbers are wrong, as on a GPU.
// - Deadlines: the MPI wait on the stream worker carries the job's deadline
//   (CommState::timeout) and fails with the CPU path's message; every operation in flight is
//   also registered, and CheckTestCollectives() (installed as the host-wait check of
//   runtime/device.h) reports the first one past its deadline, naming the operation, the group
//   and the step, so a host blocked on the device behind a stuck collective learns which one.
//   A failure becomes the device's sticky error, as an NCCL async error poisons a GPU's work.
// - A CommWork holds its tensors until the ops' stream has been made to wait for the operation
//   (the allocator rule of runtime/device.h); one that missed its deadline keeps them as long as
//   the operation may still touch them.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/mpi_backend.h"
#include "runtime/device.h"

namespace loom {

// The backend for the ranks of `group->comm` on test device `device`. Collective over `group`
// (it duplicates the MPI communicator): every member calls it at the same point.
// `name` (the group's: "tp", "dp", ...) keys its device times.
absl::StatusOr<std::unique_ptr<CommBackend>> MakeTestCommBackend(
    std::shared_ptr<MpiCommHandle> group, std::shared_ptr<CommState> state, Device* device,
    const std::string& name = "");

// The first error among the test device's collectives in flight (failed, or past its deadline);
// OK when none. Forgets those that completed.
absl::Status CheckTestCollectives();
// "all_reduce(sum) of ... on dp [0,1]": the oldest collective still in flight, or "".
std::string OldestTestCollective();
// Seconds the collectives completed since the last call spent on their communication streams
// (from the moment the stream started the operation, after its wait for the ops' stream, to its
// end, waiting for peers included: what the NCCL backend's CUDA events measure), per group name.
std::map<std::string, double> TakeTestCommDeviceSeconds();

}  // namespace loom
