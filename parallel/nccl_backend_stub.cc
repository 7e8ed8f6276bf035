// Stands in for nccl_backend.cc in a CPU-only build: there is no NCCL backend.
#include "absl/strings/str_cat.h"
#include "parallel/nccl_backend.h"

namespace loom {

absl::StatusOr<std::unique_ptr<CommBackend>> MakeNcclBackend(std::shared_ptr<MpiCommHandle>,
                                                             std::shared_ptr<CommState>,
                                                             Device* cuda_device,
                                                             const std::string&) {
  return absl::UnavailableError(
      absl::StrCat("no NCCL backend for ",
                   cuda_device == nullptr ? std::string("no device") : cuda_device->Name(),
                   ": loom was built without CUDA (CPU-only build)"));
}

int AbortNcclCommunicators(absl::Duration) { return 0; }

std::map<std::string, double> TakeNcclDeviceSeconds() { return {}; }

}  // namespace loom
