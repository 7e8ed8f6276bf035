// Shape / dtype / device checks for ops/norm.h, then dispatch to the CPU or CUDA kernels.
// x may have any rank >= 1: the last dimension is C and the leading ones are flattened into N.
// Row statistics (mean, rstd) are f32 tensors with N elements (e.g. [N] or [B, T]).
// GPU dtypes: activations (x, a, b, out, residual_out, dout, dx) share one dtype, f32 or bf16;
// weight and bias share one dtype, f32 or bf16; dweight and dbias share one, f32 or bf16.
#include "ops/norm.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cpu/norm.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"
#ifdef LOOM_WITH_CUDA
#include "ops/cuda/norm.h"
#endif

namespace loom::ops {
namespace {

struct Rows {
  int64_t n = 0;
  int64_t c = 0;
};

bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kBF16; }

absl::StatusOr<Rows> RowsOf(const Tensor& x, const std::string& what) {
  if (!x.defined()) return absl::InvalidArgumentError(absl::StrCat(what, ": tensor is undefined"));
  if (x.rank() < 1 || x.dim(-1) <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected [N, C] with C > 0 (leading dims are flattened), got ",
                     x.shape().ToString()));
  }
  if (!IsFloat(x.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected dtype f32 or bf16, got ",
                                                   std::string(DTypeName(x.dtype()))));
  }
  return Rows{x.numel() / x.dim(-1), x.dim(-1)};
}

// Same shape, dtype and device as `like`.
absl::Status CheckLike(const Tensor& t, const Tensor& like, const std::string& what,
                       const std::string& like_name) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(what, ": tensor is undefined"));
  if (t.shape() != like.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected shape ",
                                                   like.shape().ToString(), " (as ", like_name,
                                                   "), got ", t.shape().ToString()));
  }
  if (t.dtype() != like.dtype()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected dtype ", std::string(DTypeName(like.dtype())), " (as ",
                     like_name, "), got ", std::string(DTypeName(t.dtype()))));
  }
  return CheckSameDevice(t, like, what.c_str());
}

// A [C] parameter (or parameter gradient) on x's device.
absl::Status CheckParam(const Tensor& t, const Tensor& x, int64_t c, const std::string& what) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(what, ": tensor is undefined"));
  LOOM_RETURN_IF_ERROR(CheckShape(t, Shape({c}), what.c_str()));
  if (!IsFloat(t.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected dtype f32 or bf16, got ",
                                                   std::string(DTypeName(t.dtype()))));
  }
  return CheckSameDevice(t, x, what.c_str());
}

absl::Status CheckSameDType(const Tensor& t, const Tensor& like, const std::string& what,
                            const std::string& like_name) {
  if (t.dtype() != like.dtype()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected dtype ", std::string(DTypeName(like.dtype())), " (as ",
                     like_name, "), got ", std::string(DTypeName(t.dtype()))));
  }
  return absl::OkStatus();
}

// f32 row statistics with n elements on x's device.
absl::Status CheckStats(const Tensor& t, const Tensor& x, int64_t n, const std::string& what) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(what, ": tensor is undefined"));
  if (t.numel() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": expected ", n, " elements (one per row), got shape ", t.shape().ToString()));
  }
  LOOM_RETURN_IF_ERROR(CheckDType(t, DType::kF32, what.c_str()));
  return CheckSameDevice(t, x, what.c_str());
}

// The CPU backend is fp32 only.
absl::Status CheckCpuF32(std::initializer_list<const Tensor*> ts, const char* op) {
  for (const Tensor* t : ts) {
    if (t && t->defined() && t->dtype() != DType::kF32) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": the CPU backend supports f32 only, got ", t->DebugString()));
    }
  }
  return absl::OkStatus();
}

#ifndef LOOM_WITH_CUDA
absl::Status NoCuda(const char* op) {
  return absl::UnimplementedError(
      absl::StrCat(op, ": tensors are on a CUDA device but loom was built without CUDA"));
}
#endif

// Checks shared by the four forwards. a/b: the inputs (b null unless fused); bias null for RMS.
absl::Status CheckForward(const char* op, const Tensor& a, const Tensor* b, const Tensor& weight,
                          const Tensor* bias, const Tensor* residual_out, const Tensor& out,
                          const Tensor* mean, const Tensor& rstd, float eps, Rows* rows) {
  const std::string p = absl::StrCat(op, ": ");
  LOOM_ASSIGN_OR_RETURN(*rows, RowsOf(a, p + (b ? "a" : "x")));
  if (b) LOOM_RETURN_IF_ERROR(CheckLike(*b, a, p + "b", "a"));
  if (residual_out) LOOM_RETURN_IF_ERROR(CheckLike(*residual_out, a, p + "residual_out", "a"));
  LOOM_RETURN_IF_ERROR(CheckLike(out, a, p + "out", b ? "a" : "x"));
  LOOM_RETURN_IF_ERROR(CheckParam(weight, a, rows->c, p + "weight"));
  if (bias) {
    LOOM_RETURN_IF_ERROR(CheckParam(*bias, a, rows->c, p + "bias"));
    LOOM_RETURN_IF_ERROR(CheckSameDType(*bias, weight, p + "bias", "weight"));
  }
  if (mean) LOOM_RETURN_IF_ERROR(CheckStats(*mean, a, rows->n, p + "mean"));
  LOOM_RETURN_IF_ERROR(CheckStats(rstd, a, rows->n, p + "rstd"));
  if (!(eps >= 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(p, "eps must be >= 0, got ", eps));
  }
  if (RunsCpuKernels(a)) {
    LOOM_RETURN_IF_ERROR(CheckCpuF32({&a, b, &weight, bias, residual_out, &out}, op));
  }
  return absl::OkStatus();
}

absl::Status CheckBackward(const char* op, const Tensor& dout, const Tensor& x,
                           const Tensor& weight, const Tensor* mean, const Tensor& rstd,
                           const Tensor& dx, const Tensor& dweight, const Tensor* dbias,
                           Rows* rows) {
  const std::string p = absl::StrCat(op, ": ");
  LOOM_ASSIGN_OR_RETURN(*rows, RowsOf(x, p + "x"));
  LOOM_RETURN_IF_ERROR(CheckLike(dout, x, p + "dout", "x"));
  LOOM_RETURN_IF_ERROR(CheckLike(dx, x, p + "dx", "x"));
  LOOM_RETURN_IF_ERROR(CheckParam(weight, x, rows->c, p + "weight"));
  LOOM_RETURN_IF_ERROR(CheckParam(dweight, x, rows->c, p + "dweight"));
  if (dbias) {
    LOOM_RETURN_IF_ERROR(CheckParam(*dbias, x, rows->c, p + "dbias"));
    LOOM_RETURN_IF_ERROR(CheckSameDType(*dbias, dweight, p + "dbias", "dweight"));
  }
  if (mean) LOOM_RETURN_IF_ERROR(CheckStats(*mean, x, rows->n, p + "mean"));
  LOOM_RETURN_IF_ERROR(CheckStats(rstd, x, rows->n, p + "rstd"));
  if (RunsCpuKernels(x)) {
    LOOM_RETURN_IF_ERROR(CheckCpuF32({&dout, &x, &weight, &dx, &dweight, dbias}, op));
  }
  return absl::OkStatus();
}

const float* F(const Tensor& t) { return t.data_as<const float>(); }
float* Fm(const Tensor& t) { return t.data_as<float>(); }

}  // namespace

absl::Status LayerNormForward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                              const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  Rows r;
  LOOM_RETURN_IF_ERROR(CheckForward("LayerNormForward", x, nullptr, weight, &bias, nullptr, out,
                                    &mean, rstd, eps, &r));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      cpu::LayerNormForward<float>(F(x), F(weight), F(bias), eps, r.n, r.c, Fm(out), Fm(mean),
                                   Fm(rstd));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::NormForward(x, nullptr, weight, &bias, eps, r.n, r.c, nullptr, out, &mean, rstd);
#else
  return NoCuda("LayerNormForward");
#endif
}

absl::Status LayerNormBackward(const Tensor& dout, const Tensor& x, const Tensor& weight,
                               const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                               const Tensor& dweight, const Tensor& dbias) {
  Rows r;
  LOOM_RETURN_IF_ERROR(
      CheckBackward("LayerNormBackward", dout, x, weight, &mean, rstd, dx, dweight, &dbias, &r));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      cpu::LayerNormBackward<float>(F(dout), F(x), F(weight), F(mean), F(rstd), r.n, r.c, Fm(dx),
                                    Fm(dweight), Fm(dbias));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::NormBackward(dout, x, weight, &mean, rstd, r.n, r.c, dx, dweight, &dbias);
#else
  return NoCuda("LayerNormBackward");
#endif
}

absl::Status RMSNormForward(const Tensor& x, const Tensor& weight, float eps, const Tensor& out,
                            const Tensor& rstd) {
  Rows r;
  LOOM_RETURN_IF_ERROR(CheckForward("RMSNormForward", x, nullptr, weight, nullptr, nullptr, out,
                                    nullptr, rstd, eps, &r));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      cpu::RMSNormForward<float>(F(x), F(weight), eps, r.n, r.c, Fm(out), Fm(rstd));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::NormForward(x, nullptr, weight, nullptr, eps, r.n, r.c, nullptr, out, nullptr, rstd);
#else
  return NoCuda("RMSNormForward");
#endif
}

absl::Status RMSNormBackward(const Tensor& dout, const Tensor& x, const Tensor& weight,
                             const Tensor& rstd, const Tensor& dx, const Tensor& dweight) {
  Rows r;
  LOOM_RETURN_IF_ERROR(
      CheckBackward("RMSNormBackward", dout, x, weight, nullptr, rstd, dx, dweight, nullptr, &r));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      cpu::RMSNormBackward<float>(F(dout), F(x), F(weight), F(rstd), r.n, r.c, Fm(dx), Fm(dweight));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::NormBackward(dout, x, weight, nullptr, rstd, r.n, r.c, dx, dweight, nullptr);
#else
  return NoCuda("RMSNormBackward");
#endif
}

absl::Status FusedResidualLayerNormForward(const Tensor& a, const Tensor& b, const Tensor& weight,
                                           const Tensor& bias, float eps,
                                           const Tensor& residual_out, const Tensor& out,
                                           const Tensor& mean, const Tensor& rstd) {
  Rows r;
  LOOM_RETURN_IF_ERROR(CheckForward("FusedResidualLayerNormForward", a, &b, weight, &bias,
                                    &residual_out, out, &mean, rstd, eps, &r));
  if (RunsCpuKernels(a)) {
    return RunCpuKernel(a, [=]() -> absl::Status {
      cpu::FusedResidualLayerNormForward<float>(F(a), F(b), F(weight), F(bias), eps, r.n, r.c,
                                                Fm(residual_out), Fm(out), Fm(mean), Fm(rstd));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::NormForward(a, &b, weight, &bias, eps, r.n, r.c, &residual_out, out, &mean, rstd);
#else
  return NoCuda("FusedResidualLayerNormForward");
#endif
}

absl::Status FusedResidualRMSNormForward(const Tensor& a, const Tensor& b, const Tensor& weight,
                                         float eps, const Tensor& residual_out, const Tensor& out,
                                         const Tensor& rstd) {
  Rows r;
  LOOM_RETURN_IF_ERROR(CheckForward("FusedResidualRMSNormForward", a, &b, weight, nullptr,
                                    &residual_out, out, nullptr, rstd, eps, &r));
  if (RunsCpuKernels(a)) {
    return RunCpuKernel(a, [=]() -> absl::Status {
      cpu::FusedResidualRMSNormForward<float>(F(a), F(b), F(weight), eps, r.n, r.c,
                                              Fm(residual_out), Fm(out), Fm(rstd));
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::NormForward(a, &b, weight, nullptr, eps, r.n, r.c, &residual_out, out, nullptr,
                           rstd);
#else
  return NoCuda("FusedResidualRMSNormForward");
#endif
}

}  // namespace loom::ops
