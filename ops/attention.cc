// Checks for ops/attention.h, then dispatch. HD is derived from the packed width:
// HD = qkv.dim(2) / (n_head + 2 * n_kv_head). The CUDA kernels take any HD up to 128 (compiled
// for 64 and 128, smaller head dims padded with zeros).
#include "ops/attention.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cpu/attention.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"
#ifdef LOOM_WITH_CUDA
#include "ops/cuda/attention.h"
#endif

namespace loom::ops {
namespace {

struct Dims {
  int64_t b = 0, t = 0;
  int hd = 0;
};

absl::Status CheckTensor(const Tensor& x, const Tensor& qkv, const Shape& shape, DType dtype,
                         const std::string& what) {
  if (!x.defined()) return absl::InvalidArgumentError(what + ": tensor is undefined");
  LOOM_RETURN_IF_ERROR(CheckShape(x, shape, what.c_str()));
  LOOM_RETURN_IF_ERROR(CheckDType(x, dtype, what.c_str()));
  return CheckSameDevice(x, qkv, what.c_str());
}

absl::StatusOr<Dims> CheckQkv(const char* op, const Tensor& qkv, int n_head, int n_kv_head) {
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
  if (qkv.rank() != 3 || qkv.dim(2) == 0 || qkv.dim(2) % heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "qkv: expected [B, T, (n_head + 2*n_kv_head) * HD] = [B, T, ", heads,
                     " * HD], got ", qkv.shape().ToString()));
  }
  Dims d{qkv.dim(0), qkv.dim(1), static_cast<int>(qkv.dim(2) / heads)};
  if (RunsCpuKernels(qkv)) {
    LOOM_RETURN_IF_ERROR(CheckDType(qkv, DType::kF32, (p + "qkv (CPU backend)").c_str()));
  } else {
    if (qkv.dtype() != DType::kF32 && qkv.dtype() != DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, "qkv: expected dtype f32 or bf16, got ", qkv.DebugString()));
    }
    if (d.hd > 128) {
      return absl::InvalidArgumentError(absl::StrCat(
          p, "head dim HD = ", d.hd, " (qkv width ", qkv.dim(2), " / ", heads,
          " heads) is not supported by the CUDA kernel (at most 128)"));
    }
  }
  return d;
}

// Segments: i32 [B, T] beside qkv; on the CPU also nondecreasing along T (checked when the
// kernel runs, where the host may read them).
absl::Status CheckSegments(const std::string& p, const Tensor* segments, const Tensor& qkv,
                           const Dims& d) {
  if (segments == nullptr) return absl::OkStatus();
  return CheckTensor(*segments, qkv, Shape({d.b, d.t}), DType::kI32, p + "segments");
}

absl::Status CheckSegmentOrder(const std::string& p, const int32_t* seg, const Dims& d) {
  for (int64_t bi = 0; bi < d.b; ++bi) {
    for (int64_t i = 1; i < d.t; ++i) {
      if (seg[bi * d.t + i] < seg[bi * d.t + i - 1]) {
        return absl::InvalidArgumentError(absl::StrCat(
            p, "segments[", bi, ", ", i, "] = ", seg[bi * d.t + i], " is below segments[", bi, ", ",
            i - 1, "] = ", seg[bi * d.t + i - 1], " (ids must not decrease along T)"));
      }
    }
  }
  return absl::OkStatus();
}

const int32_t* SegPtr(const Tensor* s) { return s ? s->data_as<const int32_t>() : nullptr; }

}  // namespace

absl::Status AttentionForward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& out,
                              const Tensor& lse, const Tensor* segments) {
  const char* op = "AttentionForward";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckQkv(op, qkv, n_head, n_kv_head));
  const std::string p = absl::StrCat(op, ": ");
  LOOM_RETURN_IF_ERROR(
      CheckTensor(out, qkv, Shape({d.b, d.t, int64_t{n_head} * d.hd}), qkv.dtype(), p + "out"));
  LOOM_RETURN_IF_ERROR(
      CheckTensor(lse, qkv, Shape({d.b, int64_t{n_head}, d.t}), DType::kF32, p + "lse"));
  LOOM_RETURN_IF_ERROR(CheckSegments(p, segments, qkv, d));
  if (d.b == 0 || d.t == 0) return absl::OkStatus();
  if (RunsCpuKernels(qkv)) {
    return RunCpuKernel(qkv, [=, segments = OptionalTensor(segments)]() -> absl::Status {
      if (segments) LOOM_RETURN_IF_ERROR(CheckSegmentOrder(p, SegPtr(segments), d));
      cpu::AttentionForward<float>(qkv.data_as<const float>(), d.b, d.t, n_head, n_kv_head, d.hd,
                                   out.data_as<float>(), lse.data_as<float>(), SegPtr(segments));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::AttentionForward(qkv, d.b, d.t, n_head, n_kv_head, d.hd, out, lse, segments);
#else
  return absl::UnimplementedError(p + "CUDA tensor in a build without CUDA");
#endif
}

absl::Status AttentionBackward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                               const Tensor& lse, int n_head, int n_kv_head, const Tensor& dqkv,
                               const Tensor* segments) {
  const char* op = "AttentionBackward";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckQkv(op, qkv, n_head, n_kv_head));
  const std::string p = absl::StrCat(op, ": ");
  const Shape out_shape({d.b, d.t, int64_t{n_head} * d.hd});
  LOOM_RETURN_IF_ERROR(CheckTensor(dout, qkv, out_shape, qkv.dtype(), p + "dout"));
  LOOM_RETURN_IF_ERROR(CheckTensor(out, qkv, out_shape, qkv.dtype(), p + "out"));
  LOOM_RETURN_IF_ERROR(
      CheckTensor(lse, qkv, Shape({d.b, int64_t{n_head}, d.t}), DType::kF32, p + "lse"));
  LOOM_RETURN_IF_ERROR(CheckTensor(dqkv, qkv, qkv.shape(), qkv.dtype(), p + "dqkv"));
  LOOM_RETURN_IF_ERROR(CheckSegments(p, segments, qkv, d));
  if (d.b == 0 || d.t == 0) return absl::OkStatus();
  if (RunsCpuKernels(qkv)) {
    return RunCpuKernel(qkv, [=, segments = OptionalTensor(segments)]() -> absl::Status {
      if (segments) LOOM_RETURN_IF_ERROR(CheckSegmentOrder(p, SegPtr(segments), d));
      cpu::AttentionBackward<float>(dout.data_as<const float>(), qkv.data_as<const float>(),
                                    out.data_as<const float>(), lse.data_as<const float>(), d.b,
                                    d.t, n_head, n_kv_head, d.hd, dqkv.data_as<float>(),
                                    SegPtr(segments));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::AttentionBackward(dout, qkv, out, lse, d.b, d.t, n_head, n_kv_head, d.hd, dqkv,
                                 segments);
#else
  return absl::UnimplementedError(p + "CUDA tensor in a build without CUDA");
#endif
}

}  // namespace loom::ops
