// One verdict on a job, shared by `loom config check` and `loom train` (and Trainer::Create),
// so the two never disagree: everything wrong with the config itself (ConfigProblems), what
// this build cannot do yet (NotYetSupported), data globs that match no file, a run_dir holding
// an earlier run's metrics, and a job whose memory does not fit this machine. All of it is
// decided before any large allocation; a bad job is InvalidArgument (exit code 2).
//
// Memory: the estimate (job/memory_estimate.h) of the rank needing the most, times the
// ranks sharing this host's RAM on the CPU backend (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE; 1
// outside mpirun), plus a reserve for what the estimate leaves out (kCpuMemoryReserve,
// kGpuMemoryReserve), must not exceed the available memory (runtime/memory_info.h; the
// LOOM_MEMORY_LIMIT_BYTES environment variable caps it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "job/config.h"
#include "job/memory_estimate.h"
#include "runtime/memory_info.h"

namespace loom {

inline constexpr int64_t kCpuMemoryReserve = int64_t{64} << 20;   // code, heap, MPI, OpenBLAS
inline constexpr int64_t kGpuMemoryReserve = int64_t{512} << 20;  // cuBLAS workspaces, NCCL

struct JobCheck {
  std::vector<std::string> problems;     // empty when the job can run here
  std::optional<JobLayout> numbers;      // when the config itself is valid
  std::optional<MemoryEstimate> memory;  // with the numbers
  std::optional<AvailableMemory> available;
  bool on_gpu = false;     // the backend the job gets here
  int ranks_per_host = 1;  // ranks sharing the host's RAM (CPU backend)
  int64_t reserve = 0;     // bytes kept back from `available`
};

// Checks `config` (defaults applied) for a job of `world_size` ranks on this machine.
JobCheck CheckJob(const JobConfig& config, int world_size);

// OK, or InvalidArgument "N problem(s) in the job (world size W):" with one "  - ..." line each.
absl::Status JobCheckStatus(const JobCheck& check, int world_size);

// The memory lines of `loom config check` (estimate, available, verdict), each starting with
// `prefix`; empty without an estimate.
std::string FormatJobMemory(const JobCheck& check, const std::string& prefix);

}  // namespace loom
