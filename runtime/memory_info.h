// How much memory a job may still take: on the host, what the kernel will give this process
// before the OOM killer steps in; on a GPU, what the driver reports free. Used to refuse a job
// that cannot fit before anything large is allocated (job/job_check.h).
//
// Host: the smallest of /proc/meminfo's MemAvailable, the cgroup v2 limit left
// (memory.max - memory.current, walked from this process's cgroup up to the root) and the
// cgroup v1 limit left (memory.limit_in_bytes - memory.usage_in_bytes). GPU: cudaMemGetInfo's
// free bytes (through Device::GetMemoryInfo).
//
// LOOM_MEMORY_LIMIT_BYTES=N (an integer, optionally with a K/M/G/T suffix, powers of 1024)
// caps the result at N for both, naming the variable as the source: for tests, and for a user
// who wants to keep room for something else on the machine.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace loom {

inline constexpr char kMemoryLimitEnv[] = "LOOM_MEMORY_LIMIT_BYTES";

struct AvailableMemory {
  int64_t bytes = 0;   // what the job may still allocate
  std::string source;  // where the number comes from ("cgroup v2 memory.max - memory.current")
};

// The host memory this process may still take.
absl::StatusOr<AvailableMemory> HostAvailableMemory();
// Free memory of CUDA device `index` (Unavailable without CUDA or without that device).
absl::StatusOr<AvailableMemory> CudaAvailableMemory(int index);

// The parsed LOOM_MEMORY_LIMIT_BYTES, or -1 when unset. Errors name the variable and its value.
absl::StatusOr<int64_t> MemoryLimitFromEnv();

// Reads a cgroup / meminfo style number from `text`: "max" (no limit) gives -1.
absl::StatusOr<int64_t> ParseCgroupBytes(const std::string& text);

}  // namespace loom
