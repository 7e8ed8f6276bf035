// Stands in for cuda_device.cc in a CPU-only build: CUDA is never available.
#include "absl/status/status.h"
#include "runtime/device.h"

namespace loom {

int CudaDeviceCount() { return 0; }
std::string CudaUnavailableReason() { return "loom was built without CUDA (CPU-only build)"; }
absl::StatusOr<Device*> CudaDevice(int) { return absl::UnavailableError(CudaUnavailableReason()); }
absl::StatusOr<MemoryInfo> CudaMemoryInfo(int) {
  return absl::UnavailableError(CudaUnavailableReason());
}
absl::StatusOr<CudaDeviceFacts> GetCudaDeviceFacts(int) {
  return absl::UnavailableError(CudaUnavailableReason());
}
absl::Status UseCudaDevice(int) { return absl::UnavailableError(CudaUnavailableReason()); }

}  // namespace loom
