// Devices: the CPU and CUDA GPUs behind one interface (allocate, free, copy, memset,
// synchronize, name, memory info). Each device owns a caching allocator whose live, peak and
// reserved byte counters feed the memory column of the training log.
//
// CpuDevice() always exists. CudaDevice(i) returns Unavailable with the reason when loom was
// built without CUDA or no GPU answers, so callers and GPU tests can say why they skip.
// TestDevice(i) (runtime/test_device.h) behaves like a GPU on the CPU: memory the host reaches
// only by copies, work queued on streams run by worker threads.
//
// Above ops/, the only question code asks about a device is host_memory(): whether the host
// may read and write its memory directly. Everything else (which kernels, which collective
// backend) follows from where tensors live.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loom {

enum class DeviceKind : uint8_t { kCpu = 0, kCuda = 1, kTest = 2 };

// Test-device memory carries this tag in its addresses (runtime/test_device.h): on x86-64 such
// an address is non-canonical, so a host thread that dereferences one faults at once. Threads
// that act as the device (its stream workers) see the real address: Tensor::data() strips the
// tag there. Host memory never has the tag set.
inline constexpr uintptr_t kTestDeviceAddressTag = uintptr_t{1} << 62;
// True on a thread that runs device work (a test device's stream worker).
inline thread_local bool tls_acting_as_device = false;
inline void* AddressForThisThread(void* p) {
  return tls_acting_as_device
             ? reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~kTestDeviceAddressTag)
             : p;
}

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
  std::multimap<size_t, void*> cache_;  // size -> free block
  std::map<void*, size_t> live_;        // ptr -> size
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
  // Host to device without waiting for the copy: `host_src` must stay unchanged and alive until
  // the device's op stream has passed the copy (pinned staging buffers the caller recycles only
  // after an event or a synchronisation). Devices that cannot queue copies copy at once.
  virtual absl::Status CopyFromHostAsync(void* dst, const void* host_src, size_t bytes) {
    return CopyFromHost(dst, host_src, bytes);
  }
  // Host memory for CopyFromHostAsync's sources: page-locked on CUDA (a copy from pageable
  // memory makes the host wait), plain aligned memory elsewhere.
  virtual absl::StatusOr<void*> AllocateHostStaging(size_t bytes);
  virtual void FreeHostStaging(void* ptr);
  // Device to host without waiting, into staging memory (AllocateHostStaging): queued behind
  // the work already queued on the device's op stream, so it sees what that work wrote and not
  // what later work writes. `host_dst` holds the bytes only once WaitForCopies has returned OK;
  // until then it must stay alive (even when a wait failed: the copy may still land). Devices
  // that cannot queue copies copy at once.
  virtual absl::Status CopyToHostAsync(void* host_dst, const void* src, size_t bytes) {
    return CopyToHost(host_dst, src, bytes);
  }
  // The host waits, with the job's deadline (runtime/host_wait.h), for every copy queued so far
  // (CopyToHostAsync, CopyFromHostAsync) and the work before it: one counted host
  // synchronisation. Nothing to wait for on the CPU.
  virtual absl::Status WaitForCopies(const std::string& what) {
    (void)what;
    return absl::OkStatus();
  }

  bool is_cpu() const { return kind() == DeviceKind::kCpu; }
  bool is_cuda() const { return kind() == DeviceKind::kCuda; }
  bool is_test() const { return kind() == DeviceKind::kTest; }
  // Whether the host may dereference this device's memory (only the CPU's). The question code
  // above ops/ asks instead of "is this CUDA".
  bool host_memory() const { return kind() == DeviceKind::kCpu; }
  CachingAllocator& allocator() { return allocator_; }

  // Times the host blocked until this device's work finished (copies to the host, blocking
  // copies from pageable memory, stream / event / device synchronisations), since the process
  // began. The trainer's budget test reads it per step.
  int64_t host_syncs() const { return host_syncs_.load(std::memory_order_relaxed); }
  // Bytes copied from this device's memory to the host, and from the host to it, since the
  // process began (CUDA and the test device; 0 on the CPU, whose memory is the host's). Tests
  // read them to see what a save or a step moved.
  int64_t bytes_to_host() const { return bytes_to_host_.load(std::memory_order_relaxed); }
  int64_t bytes_from_host() const { return bytes_from_host_.load(std::memory_order_relaxed); }

 protected:
  Device() : allocator_(this) {}
  void CountHostSync() { host_syncs_.fetch_add(1, std::memory_order_relaxed); }
  void CountBytesToHost(size_t n) {
    bytes_to_host_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  }
  void CountBytesFromHost(size_t n) {
    bytes_from_host_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  }

 private:
  CachingAllocator allocator_;
  std::atomic<int64_t> host_syncs_{0};
  std::atomic<int64_t> bytes_to_host_{0}, bytes_from_host_{0};
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

// Host waits on device work carry the job's deadline: runtime/host_wait.h (WaitForDevice).

// Copies between any two devices (host<->device, device<->device on one GPU or peers).
absl::Status CopyBytes(Device* dst_dev, void* dst, Device* src_dev, const void* src, size_t bytes);

}  // namespace loom
