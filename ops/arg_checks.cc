#include "ops/arg_checks.h"

#include "absl/strings/str_cat.h"
#include "ops/host_kernel.h"

namespace loom::ops {

std::string TensorDesc(const Tensor& t) {
  return absl::StrCat(std::string(DTypeName(t.dtype())), t.shape().ToString());
}

absl::Status CheckDefinedArg(const Tensor& t, const char* op, const char* name) {
  if (!t.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is an undefined tensor"));
  }
  return absl::OkStatus();
}

absl::Status CheckSameDeviceArg(const Tensor& ref, const Tensor& t, const char* op,
                                const char* name) {
  if (t.device() != ref.device()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", t.DebugString(),
                                                   " but the op's inputs are on ",
                                                   ref.device()->Name()));
  }
  return absl::OkStatus();
}

absl::Status CheckDTypeArg(const Tensor& t, DType want, const char* op, const char* name) {
  if (t.dtype() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " must be ", std::string(DTypeName(want)), ", got ", TensorDesc(t)));
  }
  return absl::OkStatus();
}

absl::Status CheckDTypeInArg(const Tensor& t, std::initializer_list<DType> allowed, const char* op,
                             const char* name) {
  std::string names;
  for (DType d : allowed) {
    if (t.dtype() == d) return absl::OkStatus();
    absl::StrAppend(&names, names.empty() ? "" : " or ", std::string(DTypeName(d)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": ", name, " must be ", names, ", got ", TensorDesc(t)));
}

absl::Status CheckFloatOperandArg(const Tensor& t, const char* op, const char* name) {
  if (RunsCpuKernels(t) && t.dtype() != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " must be f32 on the CPU (the CPU backend is fp32 only), got ",
                     TensorDesc(t)));
  }
  return CheckDTypeInArg(t, {DType::kF32, DType::kBF16}, op, name);
}

void MatrixDims(const Tensor& t, int64_t* rows, int64_t* cols) {
  *cols = t.rank() == 0 ? 1 : t.dim(-1);
  *rows = 1;
  for (int i = 0; i + 1 < t.rank(); ++i) *rows *= t.dim(i);
}

absl::Status CheckMatrixArg(const Tensor& t, int64_t rows, int64_t cols, const char* op,
                            const char* name, const std::string& why) {
  int64_t t_rows = 0, t_cols = 0;
  MatrixDims(t, &t_rows, &t_cols);
  if (t.rank() < 1 || t_rows != rows || t_cols != cols) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " has shape ",
                                                   t.shape().ToString(), "; expected [", rows, ", ",
                                                   cols, "] (", why, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckNumelArg(const Tensor& t, int64_t n, const char* op, const char* name,
                           const std::string& why) {
  if (t.numel() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " has shape ", t.shape().ToString(), " (", t.numel(),
                     " elements); expected ", n, " elements (", why, ")"));
  }
  return absl::OkStatus();
}

absl::Status NoBackendError(const char* op, const Tensor& t) {
  return absl::UnimplementedError(absl::StrCat(op, ": no backend for ", t.DebugString(),
                                               " (CUDA tensors need a build with LOOM_WITH_CUDA)"));
}

}  // namespace loom::ops
