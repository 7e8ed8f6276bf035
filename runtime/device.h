// Devices: the CPU and CUDA GPUs behind one interface (allocate, free, copy, memset,
// synchronize, name, memory info). Each device owns a caching allocator whose live, peak and
// reserved byte counters feed the memory column of the training log.
//
// CpuDevice() always exists. CudaDevice(i) returns Unavailable with the reason when loom was
// built without CUDA or no GPU answers, so callers and GPU tests can say why they skip.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loom {

enum class DeviceKind : uint8_t { kCpu = 0, kCuda = 1 };

struct MemoryInfo {
  size_t total_bytes = 0;  // physical memory of the device
  size_t free_bytes = 0;   // as the driver / OS reports it
};

struct AllocatorStats {
  size_t live_bytes = 0;      // handed out and not yet freed
  size_t peak_bytes = 0;      // max of live_bytes since the last ResetPeak()
  size_t reserved_bytes = 0;  // obtained from the device (live + cached)
  size_t num_device_allocs = 0;
};

class Device;

// Caches freed blocks by rounded size so steady-state training does no device allocation.
// Thread-safe. Sizes are rounded up to 512 bytes (256-byte alignment is what CUDA promises
// and what vectorized kernels assume).
//
// Streams: a freed CUDA block is handed out again at once, without an event, so reuse is safe
// only because every user of device memory is ordered after the block's previous users. The
// invariant that keeps this true with more than one stream:
//  - Ops run on one stream per device, the ops' stream (ops/cuda/context.h: the legacy
//    default stream, or a blocking stream SetOpStream picks), and tensor copies and memsets on
//    the legacy default stream, which is ordered with it. Work queued there runs in order, so a
//    block freed on the host while kernels still read it is only reused by work queued after.
//  - Any other stream (the communication streams of parallel/nccl_backend.cc) touches a block
//    only between two events: it first waits for the ops' stream as it was when the work was
//    issued, and the caller keeps the block alive (CommWork holds the tensors) until the ops'
//    stream has been made to wait for the work's completion (CommWork::Wait). After that the
//    block's last use is ordered before anything the ops' stream does next, so freeing it is
//    again plain single-stream reuse.
// Code that issues work on a side stream must follow the same two rules; releasing a block
// that a side stream may still use (without one of those waits) is a use-after-free on the GPU.
class CachingAllocator {
 public:
  // Called before cached blocks of a non-CPU device go back to it (EmptyCache, the retry after
  // an out-of-memory): cudaFree synchronises the whole device, communication streams included,
  // so freeing while a collective is in flight would block the host behind it (forever when a
  // peer has stalled). The NCCL backend installs a gate that waits, with the job's deadline,
  // for every collective in flight to complete; an error from it is returned instead of freeing.
  // None by default. Process-wide; set at start-up.
  static void SetCacheReleaseGate(std::function<absl::Status()> gate);

  explicit CachingAllocator(Device* device) : device_(device) {}
  ~CachingAllocator();
  absl::StatusOr<void*> Allocate(size_t bytes);
  void Free(void* ptr);
  // Returns cached blocks to the device (after the release gate, see SetCacheReleaseGate).
  void EmptyCache();
  AllocatorStats stats() const;
  void ResetPeak();

 private:
  Device* device_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> cache_;     // size -> free block
  std::map<void*, size_t> live_;           // ptr -> size
  AllocatorStats stats_;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual DeviceKind kind() const = 0;
  virtual int index() const { return 0; }
  virtual std::string Name() const = 0;

  // Uncached device allocation; most code uses allocator() instead.
  virtual absl::StatusOr<void*> RawAllocate(size_t bytes) = 0;
  virtual void RawFree(void* ptr) = 0;

  // Copies bytes where either side may live on this device or on the host.
  // For the CPU device both sides are host memory.
  virtual absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) = 0;
  virtual absl::Status CopyFromHost(void* dst, const void* host_src, size_t bytes) = 0;
  virtual absl::Status CopyWithin(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status Memset(void* dst, int value, size_t bytes) = 0;
  virtual absl::Status Synchronize() = 0;
  virtual MemoryInfo GetMemoryInfo() const = 0;

  bool is_cpu() const { return kind() == DeviceKind::kCpu; }
  bool is_cuda() const { return kind() == DeviceKind::kCuda; }
  CachingAllocator& allocator() { return allocator_; }

 protected:
  Device() : allocator_(this) {}

 private:
  CachingAllocator allocator_;
};

Device* CpuDevice();

// Number of CUDA devices visible (0 without CUDA support or without a GPU). Asked of the driver
// once per process (visibility does not change while it runs).
int CudaDeviceCount();
// Why CUDA is unavailable ("" when it is available).
std::string CudaUnavailableReason();
absl::StatusOr<Device*> CudaDevice(int index = 0);
// Free and total memory of CUDA device `index`, every return code checked (makes the device
// current: probe only the device this rank chose, runtime/cuda_device_choice.h).
absl::StatusOr<MemoryInfo> CudaMemoryInfo(int index);
// What the driver says about device `index` without making a context on it.
struct CudaDeviceFacts {
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int sm_count = 0;
  size_t total_memory_bytes = 0;
  int compute_major = 0, compute_minor = 0;
};
absl::StatusOr<CudaDeviceFacts> GetCudaDeviceFacts(int index);
// Makes CUDA device `index` current on the calling thread. The device last made current is
// remembered per thread, so calling this before every op costs no driver call when it is
// already current; loom code sets the device only through this (never cudaSetDevice directly)
// so that the remembered value stays true. Unavailable in a CPU-only build.
absl::Status UseCudaDevice(int index);

// Copies between any two devices (host<->device, device<->device on one GPU or peers).
absl::Status CopyBytes(Device* dst_dev, void* dst, Device* src_dev, const void* src, size_t bytes);

}  // namespace loom
