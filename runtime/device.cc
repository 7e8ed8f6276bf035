#include "runtime/device.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace loom {

namespace {
constexpr size_t kRound = 512;
std::function<absl::Status()>& ReleaseGate() {
  static auto* gate = new std::function<absl::Status()>();
  return *gate;
}
size_t RoundUp(size_t n) { return n == 0 ? kRound : (n + kRound - 1) / kRound * kRound; }
}  // namespace

void CachingAllocator::SetCacheReleaseGate(std::function<absl::Status()> gate) {
  ReleaseGate() = std::move(gate);
}

CachingAllocator::~CachingAllocator() {
  // Blocks still live at exit belong to leaked tensors; the process is ending, so only the cache
  // is released. Devices are process-lifetime singletons.
  EmptyCache();
}

absl::StatusOr<void*> CachingAllocator::Allocate(size_t bytes) {
  size_t size = RoundUp(bytes);
  std::unique_lock<std::mutex> lock(mu_);
  void* ptr = nullptr;
  // Best fit among cached blocks no larger than 2x the request, so a huge block is not
  // wasted on a small tensor.
  auto it = cache_.lower_bound(size);
  if (it != cache_.end() && it->first <= 2 * size) {
    size = it->first;
    ptr = it->second;
    cache_.erase(it);
  } else {
    auto raw = device_->RawAllocate(size);
    if (!raw.ok() && !cache_.empty()) {
      // Retry once after returning the cache to the device, once nothing in flight may still
      // use it (the release gate; the ops' stream reuse rule covers the rest). The gate runs
      // without the lock: what it waits for may free tensors (Free takes the lock).
      if (!device_->is_cpu() && ReleaseGate()) {
        lock.unlock();
        absl::Status gate = ReleaseGate()();
        lock.lock();
        if (!gate.ok()) {
          return absl::Status(gate.code(),
                              absl::StrCat("out of memory on ", device_->Name(), " allocating ",
                                           bytes, " bytes, and the cache cannot be released: ",
                                           gate.message()));
        }
      }
      for (auto& [s, p] : cache_) {
        device_->RawFree(p);
        stats_.reserved_bytes -= s;
      }
      cache_.clear();
      raw = device_->RawAllocate(size);
    }
    if (!raw.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "out of memory on ", device_->Name(), " allocating ", bytes, " bytes (live ",
          stats_.live_bytes, ", reserved ", stats_.reserved_bytes, "): ", raw.status().message()));
    }
    ptr = *raw;
    stats_.reserved_bytes += size;
    stats_.num_device_allocs++;
  }
  live_[ptr] = size;
  stats_.live_bytes += size;
  if (stats_.live_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.live_bytes;
  return ptr;
}

void CachingAllocator::Free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours; never happens through Tensor
  stats_.live_bytes -= it->second;
  cache_.emplace(it->second, ptr);
  live_.erase(it);
}

void CachingAllocator::EmptyCache() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.empty()) return;
  }
  // Without the lock (what the gate waits for may free tensors); a closed gate keeps the cache.
  if (!device_->is_cpu() && ReleaseGate() && !ReleaseGate()().ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [s, p] : cache_) {
    device_->RawFree(p);
    stats_.reserved_bytes -= s;
  }
  cache_.clear();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::ResetPeak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_bytes = stats_.live_bytes;
}

namespace {

class CpuDeviceImpl final : public Device {
 public:
  DeviceKind kind() const override { return DeviceKind::kCpu; }
  std::string Name() const override { return "cpu"; }
  absl::StatusOr<void*> RawAllocate(size_t bytes) override {
    void* p = std::aligned_alloc(256, RoundUp(bytes));
    if (p == nullptr) return absl::ResourceExhaustedError(absl::StrCat("malloc of ", bytes));
    return p;
  }
  void RawFree(void* ptr) override { std::free(ptr); }
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyFromHost(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyWithin(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Memset(void* dst, int value, size_t bytes) override {
    if (bytes) std::memset(dst, value, bytes);
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  MemoryInfo GetMemoryInfo() const override {
    MemoryInfo info;
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    long page = sysconf(_SC_PAGE_SIZE);
    info.total_bytes = static_cast<size_t>(pages) * page;
    info.free_bytes = static_cast<size_t>(avail) * page;
    return info;
  }
};

}  // namespace

Device* CpuDevice() {
  static CpuDeviceImpl* dev = new CpuDeviceImpl();  // never destroyed: outlives all tensors
  return dev;
}

absl::Status CopyBytes(Device* dst_dev, void* dst, Device* src_dev, const void* src,
                       size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  if (dst_dev->is_cpu() && src_dev->is_cpu()) return CpuDevice()->CopyWithin(dst, src, bytes);
  if (dst_dev->is_cpu()) return src_dev->CopyToHost(dst, src, bytes);
  if (src_dev->is_cpu()) return dst_dev->CopyFromHost(dst, src, bytes);
  // Device to device: CopyWithin uses cudaMemcpy with cudaMemcpyDefault, which handles peers
  // under unified addressing.
  return dst_dev->CopyWithin(dst, src, bytes);
}

}  // namespace loom
