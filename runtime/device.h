// Devices: the CPU and CUDA GPUs behind one interface (allocate, free, copy, memset,
// synchronize, name, memory info). Each device owns a caching allocator whose live, peak and
// reserved byte counters feed the memory column of the training log.
//
// CpuDevice() always exists. CudaDevice(i) returns Unavailable with the reason when loom was
// built without CUDA or no GPU answers, so callers and GPU tests can say why they skip.
#pragma once

#include <cstddef>
#include <cstdint>
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
class CachingAllocator {
 public:
  explicit CachingAllocator(Device* device) : device_(device) {}
  ~CachingAllocator();
  absl::StatusOr<void*> Allocate(size_t bytes);
  void Free(void* ptr);
  // Returns cached blocks to the device.
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

// Number of CUDA devices visible (0 without CUDA support or without a GPU).
int CudaDeviceCount();
// Why CUDA is unavailable ("" when it is available).
std::string CudaUnavailableReason();
absl::StatusOr<Device*> CudaDevice(int index = 0);

// Copies between any two devices (host<->device, device<->device on one GPU or peers).
absl::Status CopyBytes(Device* dst_dev, void* dst, Device* src_dev, const void* src, size_t bytes);

}  // namespace loom
