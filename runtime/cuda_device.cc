// CUDA device: built only when LOOM_WITH_CUDA; cuda_device_stub.cc stands in otherwise.
#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/device.h"
#include "runtime/status.h"

namespace loom {
namespace {

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
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    CountHostSync();
    LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  }
  absl::Status CopyFromHost(void* dst, const void* src, size_t bytes) override {
    CountHostSync();  // from pageable memory the host waits
    LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }
  // On the legacy default stream, which the ops' (blocking) stream is ordered with; from
  // page-locked memory (AllocateHostStaging) the host does not wait.
  absl::Status CopyFromHostAsync(void* dst, const void* src, size_t bytes) override {
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cudaStreamLegacy));
    return absl::OkStatus();
  }
  absl::StatusOr<void*> AllocateHostStaging(size_t bytes) override {
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    void* p = nullptr;
    LOOM_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
    return p;
  }
  void FreeHostStaging(void* ptr) override { cudaFreeHost(ptr); }
  absl::Status CopyWithin(void* dst, const void* src, size_t bytes) override {
    LOOM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
    return absl::OkStatus();
  }
  absl::Status Memset(void* dst, int value, size_t bytes) override {
    LOOM_CUDA_CHECK(cudaMemset(dst, value, bytes));
    return absl::OkStatus();
  }
  absl::Status Synchronize() override {
    CountHostSync();
    LOOM_RETURN_IF_ERROR(UseCudaDevice(index_));
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    return absl::OkStatus();
  }
  MemoryInfo GetMemoryInfo() const override {
    MemoryInfo info;
    (void)UseCudaDevice(index_);
    cudaMemGetInfo(&info.free_bytes, &info.total_bytes);
    return info;
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
