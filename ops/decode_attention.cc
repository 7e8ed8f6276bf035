// Checks for ops/decode_attention.h, then dispatch. HD = cache.dim(1) / (n_head + 2 n_kv_head).
#include "ops/decode_attention.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cpu/decode_attention.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"
#ifdef LOOM_WITH_CUDA
#include "ops/cuda/decode_attention.h"
#endif

namespace loom::ops {

absl::Status DecodeAttention(const Tensor& cache, int n_head, int n_kv_head, int64_t pos0,
                             int64_t n, const Tensor& out) {
  const std::string p = "DecodeAttention: ";
  if (!cache.defined() || !out.defined()) {
    return absl::InvalidArgumentError(p + "cache and out must be defined");
  }
  if (n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, "n_head (", n_head, ") must be a positive multiple of n_kv_head (", n_kv_head, ")"));
  }
  const int64_t heads = n_head + 2 * static_cast<int64_t>(n_kv_head);
  if (cache.rank() != 2 || cache.dim(1) == 0 || cache.dim(1) % heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "cache: expected [L, (n_head + 2*n_kv_head) * HD] = [L, ", heads,
                     " * HD], got ", cache.shape().ToString()));
  }
  const int hd = static_cast<int>(cache.dim(1) / heads);
  if (pos0 < 0 || n < 0 || pos0 + n > cache.dim(0)) {
    return absl::InvalidArgumentError(absl::StrCat(p, "positions [", pos0, ", ", pos0 + n,
                                                   ") do not fit the cache's ", cache.dim(0),
                                                   " rows"));
  }
  LOOM_RETURN_IF_ERROR(CheckShape(out, Shape({n, int64_t{n_head} * hd}), (p + "out").c_str()));
  LOOM_RETURN_IF_ERROR(CheckDType(out, cache.dtype(), (p + "out").c_str()));
  LOOM_RETURN_IF_ERROR(CheckSameDevice(out, cache, (p + "out").c_str()));
  if (n == 0) return absl::OkStatus();
  if (RunsCpuKernels(cache)) {
    LOOM_RETURN_IF_ERROR(CheckDType(cache, DType::kF32, (p + "cache (CPU backend)").c_str()));
    return RunCpuKernel(cache, [=]() -> absl::Status {
      cpu::DecodeAttention<float>(cache.data_as<const float>(), n_head, n_kv_head, hd, pos0, n,
                                  out.data_as<float>());
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::DecodeAttention(cache, n_head, n_kv_head, hd, pos0, n, out);
#else
  return absl::UnimplementedError(p + "CUDA tensor in a build without CUDA");
#endif
}

}  // namespace loom::ops
