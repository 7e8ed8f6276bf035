// Checks for ops/rope.h, then dispatch. HD is derived from the packed width:
// HD = qkv.dim(2) / (n_head + 2 * n_kv_head), and must be even.
#include "ops/rope.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cpu/rope.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"
#ifdef LOOM_WITH_CUDA
#include "ops/cuda/rope.h"
#endif

namespace loom::ops {
namespace {

absl::StatusOr<int> CheckRope(const char* op, const Tensor& qkv, int n_head, int n_kv_head,
                              float theta, int64_t pos_offset) {
  const std::string p = absl::StrCat(op, ": ");
  if (!qkv.defined()) return absl::InvalidArgumentError(p + "qkv is undefined");
  if (n_head <= 0 || n_kv_head <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "n_head (", n_head, ") and n_kv_head (", n_kv_head, ") must be positive"));
  }
  if (n_head % n_kv_head != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "n_head (", n_head, ") must be a multiple of n_kv_head (", n_kv_head, ")"));
  }
  const int64_t heads = n_head + 2 * static_cast<int64_t>(n_kv_head);
  if (qkv.rank() != 3 || qkv.dim(2) % heads != 0 || qkv.dim(2) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "qkv: expected [B, T, (n_head + 2*n_kv_head) * HD] = [B, T, ", heads,
                     " * HD], got ", qkv.shape().ToString()));
  }
  const int64_t hd = qkv.dim(2) / heads;
  if (hd % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "head dim HD = ", hd, " must be even for rotate-half RoPE"));
  }
  if (!(theta > 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(p, "theta must be > 0, got ", theta));
  }
  if (pos_offset < 0) {
    return absl::InvalidArgumentError(absl::StrCat(p, "pos_offset must be >= 0, got ", pos_offset));
  }
  if (qkv.dtype() != DType::kF32 && !(qkv.is_cuda() && qkv.dtype() == DType::kBF16)) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "qkv: expected f32 (or bf16 on CUDA), got ", qkv.DebugString()));
  }
  return static_cast<int>(hd);
}

absl::Status CheckPositionIds(const char* op, const Tensor& qkv, const Tensor* positions) {
  if (positions == nullptr) return absl::OkStatus();
  if (!positions->defined() || positions->dtype() != DType::kI32 || positions->rank() != 2 ||
      positions->dim(0) != qkv.dim(0) || positions->dim(1) != qkv.dim(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": positions: expected i32 [B, T] = [", qkv.dim(0), ", ", qkv.dim(1),
                     "] (qkv's ", qkv.shape().ToString(), "), got ",
                     positions->defined() ? positions->DebugString() : std::string("undefined")));
  }
  if (positions->device() != qkv.device()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": positions live on ",
                                                   positions->device()->Name(), ", qkv on ",
                                                   qkv.device()->Name()));
  }
  return absl::OkStatus();
}

absl::Status Apply(const char* op, const Tensor& qkv, int n_head, int n_kv_head, float theta,
                   int64_t pos_offset, bool inverse, const Tensor* positions) {
  LOOM_ASSIGN_OR_RETURN(int hd, CheckRope(op, qkv, n_head, n_kv_head, theta, pos_offset));
  LOOM_RETURN_IF_ERROR(CheckPositionIds(op, qkv, positions));
  if (RunsCpuKernels(qkv)) {
    return RunCpuKernel(qkv, [=, pos = OptionalTensor(positions)]() -> absl::Status {
      const int32_t* ids = pos != nullptr ? pos->data_as<int32_t>() : nullptr;
      const int64_t n = qkv.dim(0) * qkv.dim(1);
      for (int64_t i = 0; ids != nullptr && i < n; ++i) {
        if (ids[i] < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(op, ": positions[", i, "] = ", ids[i], "; expected >= 0"));
        }
      }
      cpu::RopeApply<float>(qkv.data_as<float>(), qkv.dim(0), qkv.dim(1), n_head, n_kv_head, hd,
                            theta, pos_offset, inverse, ids);
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::RopeApply(qkv, n_head, n_kv_head, hd, theta, pos_offset, inverse, positions);
#else
  return absl::UnimplementedError(absl::StrCat(op, ": CUDA tensor in a build without CUDA"));
#endif
}

}  // namespace

absl::Status RopeForward(const Tensor& qkv, int n_head, int n_kv_head, float theta,
                         int64_t pos_offset, const Tensor* positions) {
  return Apply("RopeForward", qkv, n_head, n_kv_head, theta, pos_offset, /*inverse=*/false,
               positions);
}

absl::Status RopeBackward(const Tensor& dqkv, int n_head, int n_kv_head, float theta,
                          int64_t pos_offset, const Tensor* positions) {
  return Apply("RopeBackward", dqkv, n_head, n_kv_head, theta, pos_offset, /*inverse=*/true,
               positions);
}

}  // namespace loom::ops
