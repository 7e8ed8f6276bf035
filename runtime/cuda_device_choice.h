// Which CUDA device a rank uses, decided before any CUDA context exists. A pure function of the
// rank's place on its node and of how many devices the process sees, so that it is unit-tested
// without a GPU and every rank takes the same decision the same way:
//   - one visible device: device 0. This is what `srun --gpus-per-task=1`, `--gpu-bind` and
//     per-rank CUDA_VISIBLE_DEVICES wrappers give: each rank sees only its own GPU.
//   - otherwise: local rank mod visible devices (local rank r on GPU r when each rank of the
//     node sees all of them; a rank seeing a subset of k devices takes r mod k).
//   - none visible: Unavailable with the reason.
// Nothing in here touches the driver: the caller probes (cudaMemGetInfo, the job check's free
// memory) only the device chosen, so no rank makes a context on GPU 0 by accident (eight
// contexts on GPU 0 cost ~4 GiB there, read the wrong free memory, and in EXCLUSIVE_PROCESS
// mode make seven of eight ranks fail).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace loom {

struct LocalPlacement {
  int local_rank = 0;  // rank among this node's processes
  int local_size = 1;  // processes on this node
};

// The placement the launcher gave this process, from its environment, without MPI:
// OMPI_COMM_WORLD_LOCAL_RANK/SIZE (Open MPI), else SLURM_LOCALID / SLURM_NTASKS_PER_NODE (or
// SLURM_TASKS_PER_NODE's first number), else MPI_LOCALRANKID / MPI_LOCALNRANKS (MPICH, Intel),
// else LOCAL_RANK / LOCAL_WORLD_SIZE; {0, 1} when none is set. Unparsable values are ignored.
LocalPlacement LocalPlacementFromEnv();

// The device index for a rank at `where` among `visible` devices (see the file comment).
// InvalidArgument for a placement that makes no sense (negative, local_rank >= local_size);
// Unavailable when visible == 0 (with `why_unavailable` in the message).
absl::StatusOr<int> ChooseCudaDevice(const LocalPlacement& where, int visible,
                                     const std::string& why_unavailable = "");

// Where ChooseCudaDevice's answer came from, for logs: "local rank 3 of 8, 8 visible: cuda:3".
std::string DescribeCudaChoice(const LocalPlacement& where, int visible, int device);

}  // namespace loom
