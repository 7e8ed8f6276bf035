#include "runtime/cuda_device_choice.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace loom {
namespace {

// The integer value of environment variable `name`, or -1 when unset or not an integer.
int EnvInt(const char* name) {
  const char* v = std::getenv(name);
  int n = -1;
  if (v == nullptr || !absl::SimpleAtoi(v, &n)) return -1;
  return n;
}

// SLURM_TASKS_PER_NODE looks like "4(x2),3": the first number is this layout's tasks per node
// for the first nodes; only used when SLURM_NTASKS_PER_NODE is absent.
int SlurmTasksPerNode() {
  int n = EnvInt("SLURM_NTASKS_PER_NODE");
  if (n > 0) return n;
  const char* v = std::getenv("SLURM_TASKS_PER_NODE");
  if (v == nullptr) return -1;
  n = 0;
  for (const char* p = v; *p >= '0' && *p <= '9'; ++p) n = n * 10 + (*p - '0');
  return n > 0 ? n : -1;
}

}  // namespace

LocalPlacement LocalPlacementFromEnv() {
  const std::pair<int, int> sources[] = {
      {EnvInt("OMPI_COMM_WORLD_LOCAL_RANK"), EnvInt("OMPI_COMM_WORLD_LOCAL_SIZE")},
      {EnvInt("SLURM_LOCALID"), SlurmTasksPerNode()},
      {EnvInt("MPI_LOCALRANKID"), EnvInt("MPI_LOCALNRANKS")},
      {EnvInt("LOCAL_RANK"), EnvInt("LOCAL_WORLD_SIZE")},
  };
  for (const auto& [rank, size] : sources) {
    if (rank >= 0 && size >= 1 && rank < size) return LocalPlacement{rank, size};
  }
  return LocalPlacement{};
}

absl::StatusOr<int> ChooseCudaDevice(const LocalPlacement& where, int visible,
                                     const std::string& why_unavailable) {
  if (where.local_size < 1 || where.local_rank < 0 || where.local_rank >= where.local_size) {
    return absl::InvalidArgumentError(absl::StrCat("local rank ", where.local_rank, " of ",
                                                   where.local_size,
                                                   " is not a place on a node (want 0 <= "
                                                   "local rank < local size)"));
  }
  if (visible <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "local rank ", where.local_rank, " of ", where.local_size, " sees no CUDA device",
        why_unavailable.empty() ? "" : absl::StrCat(": ", why_unavailable)));
  }
  // One visible: per-rank visibility (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES per rank).
  if (visible == 1) return 0;
  return where.local_rank % visible;
}

std::string DescribeCudaChoice(const LocalPlacement& where, int visible, int device) {
  return absl::StrCat("local rank ", where.local_rank, " of ", where.local_size, ", ", visible,
                      visible == 1 ? " device" : " devices", " visible: cuda:", device);
}

}  // namespace loom
