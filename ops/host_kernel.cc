#include "ops/host_kernel.h"

#include <omp.h>

#include "runtime/test_device.h"

namespace loom::ops {

absl::Status RunCpuKernel(const Tensor& t, std::function<absl::Status()> kernel) {
  if (t.device()->is_cpu() || tls_acting_as_device) return kernel();
  const int threads = omp_get_max_threads();
  return EnqueueOnTestDevice(t.device(), [threads, kernel = std::move(kernel)] {
    if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
    return kernel();
  });
}

}  // namespace loom::ops
