// CUDA device: built only when LOOM_WITH_CUDA; cuda_device_stub.cc stands in otherwise.
#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/device.h"
#include "runtime/host_wait.h"
#include "runtime/status.h"

namespace loom {
namespace {

// Host waits on the legacy default stream (where copies and memsets run, ordered after the
// ops' stream): an event recorded there is polled against the job's deadline
// (runtime/host_wait.h) instead of blocking in the driver, so a copy queued behind a stalled
// collective ends the job with a message rather than hanging it. One event per device and host
// thread, created once (no cudaEventCreate per wait).
absl::Status WaitForLegacyStream(int device, const std::string& what) {
  thread_local std::vector<cudaEvent_t> events;
  if (static_cast<int>(events.size()) <= device) events.resize(device + 1, nullptr);
  cudaEvent_t& ev = events[device];
  if (ev == nullptr) {
    LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  }
  LOOM_CUDA_CHECK(cudaEventRecord(ev, /*legacy default stream*/ 0));
  return WaitForDevice(
      [&]() -> absl::StatusOr<bool> {
        const cudaError_t q = cudaEventQuery(ev);
        if (q == cudaSuccess) return true;
        if (q == cudaErrorNotReady) return false;
        cudaGetLastError();
        return absl::InternalError(
            absl::StrCat(what, ": CUDA reports ", cudaGetErrorString(q), " while waiting"));
      },
      what);
}

class CudaDeviceImpl final : public Device {
 public:
  explicit CudaDeviceImpl(int index) : index_(index) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, index) == cudaSuccess) name_ = prop.name;
  }
  DeviceKind kind() const override { return DeviceKind::kCuda; }
  int index() const override { return index_; }
  std::string Name() const override { return absl::StrCat("cuda:", index_, " (", name_, ")"); }
  absl::StatusOr<void*> RawAllocate(size_t bytes) override {
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    void* p = nullptr;
    LOOM_CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
  }
  void RawFree(void* ptr) override {
    (void)UseCudaDevice(index_);
    cudaFree(ptr);
  }
  // Host <-> device copies: first the queued work (which may wait on a collective) is waited for
  // with the deadline, then the copy itself, which then waits for nothing but its own transfer.
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    CountHostSync();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    LOOM_RETURN_IF_ERROR(WaitForLegacyStream(
        index_, absl::StrCat("copy of ", bytes, " bytes from cuda:", index_, " to the host")));
    CountBytesToHost(bytes);
    LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  }
  absl::Status CopyFromHost(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    CountHostSync();  // from pageable memory the host waits
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    LOOM_RETURN_IF_ERROR(WaitForLegacyStream(
        index_, absl::StrCat("copy of ", bytes, " bytes from the host to cuda:", index_)));
    CountBytesFromHost(bytes);
    LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }
  // On the legacy default stream, which the ops' (blocking) stream is ordered with; from
  // page-locked memory (AllocateHostStaging) the host does not wait.
  absl::Status CopyFromHostAsync(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    CountBytesFromHost(bytes);
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cudaStreamLegacy));
    return absl::OkStatus();
  }
  // The same stream the other way: into page-locked memory the host does not wait; the bytes
  // are there once WaitForCopies has returned.
  absl::Status CopyToHostAsync(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    CountBytesToHost(bytes);
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cudaStreamLegacy));
    return absl::OkStatus();
  }
  absl::Status WaitForCopies(const std::string& what) override {
    CountHostSync();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    return WaitForLegacyStream(index_, absl::StrCat(what, " on cuda:", index_));
  }
  absl::StatusOr<void*> AllocateHostStaging(size_t bytes) override {
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    void* p = nullptr;
    LOOM_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
    return p;
  }
  // On this device's context (a thread that never chose one, such as a checkpoint writer, would
  // otherwise make a context on GPU 0). cudaFreeHost may wait for the device: callers free
  // staging off the training thread or where the device is idle anyway.
  void FreeHostStaging(void* ptr) override {
    (void)UseCudaDevice(index_);
    cudaFreeHost(ptr);
  }
  // Device to device and memsets never block the host: queued on the legacy default stream.
  absl::Status CopyWithin(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, 0));
    return absl::OkStatus();
  }
  absl::Status Memset(void* dst, int value, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    LOOM_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, 0));
    return absl::OkStatus();
  }
  // Everything queued on the ops' and copy streams (the legacy default stream waits for every
  // blocking stream), with the deadline. Not cudaDeviceSynchronize: that would also wait for
  // the communication streams, and hang on a collective a peer never joins.
  absl::Status Synchronize() override {
    CountHostSync();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    return WaitForLegacyStream(index_, absl::StrCat("synchronisation of cuda:", index_));
  }
  MemoryInfo GetMemoryInfo() const override {
    auto info = CudaMemoryInfo(index_);
    return info.ok() ? *info : MemoryInfo{};
  }

 private:
  int index_;
  std::string name_ = "unknown";
};

// The driver's answer to "how many GPUs", asked once: visibility does not change while the
// process runs, and ops ask for every call.
struct Visibility {
  int count = 0;
  std::string why_unavailable;  // "" when at least one device answers
};

const Visibility& GetVisibility() {
  static const Visibility* v = [] {
    auto* out = new Visibility();
    cudaError_t rc = cudaGetDeviceCount(&out->count);
    if (rc != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      out->count = 0;
      out->why_unavailable = absl::StrCat("no CUDA device answers: ", cudaGetErrorString(rc));
    } else if (out->count == 0) {
      out->why_unavailable = "no CUDA device is visible";
    }
    return out;
  }();
  return *v;
}

// The device this thread last made current through UseCudaDevice (-1: none yet).
thread_local int current_device = -1;

}  // namespace

int CudaDeviceCount() { return GetVisibility().count; }

std::string CudaUnavailableReason() { return GetVisibility().why_unavailable; }

absl::Status UseCudaDevice(int index) {
  if (index == current_device) return absl::OkStatus();
  const int n = CudaDeviceCount();
  if (index < 0 || index >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", index, " requested but ", n, " are visible"));
  }
  LOOM_CUDA_CHECK(cudaSetDevice(index));
  current_device = index;
  return absl::OkStatus();
}

absl::StatusOr<MemoryInfo> CudaMemoryInfo(int index) {
  LOOM_RETURN_IF_ERROR(UseCudaDevice(index));
  MemoryInfo info;
  LOOM_CUDA_CHECK(cudaMemGetInfo(&info.free_bytes, &info.total_bytes));
  return info;
}

absl::StatusOr<CudaDeviceFacts> GetCudaDeviceFacts(int index) {
  const int n = CudaDeviceCount();
  if (index < 0 || index >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", index, " requested but ", n, " are visible"));
  }
  cudaDeviceProp prop{};
  LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  CudaDeviceFacts f;
  f.name = prop.name;
  f.sm_count = prop.multiProcessorCount;
  f.total_memory_bytes = prop.totalGlobalMem;
  f.compute_major = prop.major;
  f.compute_minor = prop.minor;
  return f;
}

absl::StatusOr<Device*> CudaDevice(int index) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<CudaDeviceImpl>>* devices =
      new std::vector<std::unique_ptr<CudaDeviceImpl>>();
  std::string why = CudaUnavailableReason();
  if (!why.empty()) return absl::UnavailableError(why);
  int n = CudaDeviceCount();
  if (index < 0 || index >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", index, " requested but ", n, " are visible"));
  }
  std::lock_guard<std::mutex> lock(mu);
  if (devices->empty()) devices->resize(n);
  if (!(*devices)[index]) (*devices)[index] = std::make_unique<CudaDeviceImpl>(index);
  return (*devices)[index].get();
}

}  // namespace loom
