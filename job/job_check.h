// One verdict on a job, shared by `loom config check` and `loom train` (and Trainer::Create),
// so the two never disagree: everything wrong with the config itself (ConfigProblems), what
// this build cannot do yet (NotYetSupported), data that does not open as training opens it
// (globs, shard headers and sizes, token ids), a checkpoint.dir or run_dir that cannot be
// written or is locked by another job (runtime/dir_lock.h), a resume checkpoint that does not
// open or lies past this run's last step, a fresh start over existing checkpoints without
// --overwrite, a model.init_from that cannot be read, a run_dir holding another run's metrics,
// and a job whose memory does not fit this machine. All of it is decided before any large
// allocation; a bad job is InvalidArgument (exit code 2). docs/refusals.md lists them.
//
// Memory: the estimate (job/memory_estimate.h) of the rank needing the most, times the
// ranks sharing this host's RAM on the CPU backend (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE; 1
// outside mpirun), plus a reserve for what the estimate leaves out (kCpuMemoryReserve;
// GpuMemoryReserve), must not exceed the available memory (runtime/memory_info.h; the
// LOOM_MEMORY_LIMIT_BYTES environment variable caps it).
//
// GPU: the rank first chooses its device (runtime/cuda_device_choice.h, from its place on the
// node) and probes only that one. The probe makes the device's CUDA context, so the free
// memory it reads is what is left after the context: the context is measured, not assumed.
// The reserve is then what loom adds beside its tensors: the cuBLASLt workspace, the cuBLAS
// handles and op scratch, and one NCCL communicator per group of more than one rank that moves
// device tensors. Also refused here, only when the job runs on CUDA: shapes the kernels cannot
// run (CudaKernelShapeProblems).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "job/config.h"
#include "job/memory_estimate.h"
#include "runtime/cuda_device_choice.h"
#include "runtime/memory_info.h"

namespace loom {

inline constexpr int64_t kCpuMemoryReserve = int64_t{64} << 20;  // code, heap, MPI, OpenBLAS
// cuBLASLt workspace (ops/cuda/context.h kCublasWorkspaceBytes, 32 MiB) + cuBLAS handles, op
// scratch and the allocator's rounding (32 MiB).
inline constexpr int64_t kGpuOpsReserve = int64_t{64} << 20;
// One NCCL communicator's buffers and proxy state on an H100/H200 node (ring, tree and NVLS
// channels); an estimate until gpu-check measures it (docs/gpu_cuda.md).
inline constexpr int64_t kNcclCommReserve = int64_t{384} << 20;
// A CUDA context on an H100 (what `loom plan` adds to a GPU's total memory; the job check
// measures it instead, see above).
inline constexpr int64_t kCudaContextReserve = int64_t{512} << 20;

// The NCCL communicators a rank of a (tp, dp, pp, cp) layout creates: tp, dp and pp groups and
// the embedding group (first and last stage, when pp > 1), and with cp > 1 the cp ring and the
// dp x cp group gradients are reduced over (parallel/process_groups.h), each only when it has
// more than one rank. World and model groups carry host scalars only and get none.
int NcclCommunicatorCount(int tp, int dp, int pp, int cp = 1);
// kGpuOpsReserve + NcclCommunicatorCount * kNcclCommReserve.
int64_t GpuMemoryReserve(int tp, int dp, int pp, int cp = 1);

// Shapes the CUDA kernels cannot run, each naming the fields and the limit: attention's head
// dimension (hidden / heads), and the grid's micro-batch x local heads.
std::vector<std::string> CudaKernelShapeProblems(const JobConfig& config);

struct JobCheck {
  std::vector<std::string> problems;     // empty when the job can run here
  std::optional<JobLayout> numbers;      // when the config itself is valid
  std::optional<MemoryEstimate> memory;  // with the numbers
  std::optional<AvailableMemory> available;
  bool on_gpu = false;     // the backend the job gets here
  int cuda_device = -1;    // the device this rank uses (on_gpu), chosen before any probe
  int ranks_per_host = 1;  // ranks sharing the host's RAM (CPU backend)
  int64_t reserve = 0;     // bytes kept back from `available`
};

// Checks `config` (defaults applied) for a job of `world_size` ranks on this machine; `where`
// is this rank's place on its node (which GPU it will use); `ranks_per_host` ranks share its
// memory (0: from Open MPI's environment, 1 outside mpirun). probe_locks: report a
// checkpoint.dir or run_dir locked by another job (off once the job holds its own locks:
// Trainer::Create checks again).
JobCheck CheckJob(const JobConfig& config, int world_size,
                  const LocalPlacement& where = LocalPlacementFromEnv(), int ranks_per_host = 0,
                  bool probe_locks = true);

// OK, or InvalidArgument "N problem(s) in the job (world size W):" with one "  - ..." line each.
absl::Status JobCheckStatus(const JobCheck& check, int world_size);

// The memory lines of `loom config check` (estimate, available, verdict), each starting with
// `prefix`; empty without an estimate.
std::string FormatJobMemory(const JobCheck& check, const std::string& prefix);

}  // namespace loom
