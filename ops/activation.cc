// Shape / dtype checks for ops/activation.h and dispatch to the CPU or CUDA backend.
// All tensors of one call share a dtype: f32 on the CPU, f32 or bf16 on CUDA.
#include "ops/activation.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/arg_checks.h"
#include "ops/cpu/activation.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"

#ifdef LOOM_WITH_CUDA
#include "ops/cuda/activation.h"
#endif

namespace loom::ops {
namespace {

// t has ref's shape, dtype and device.
absl::Status CheckLike(const Tensor& t, const Tensor& ref, const char* op, const char* name,
                       const char* ref_name) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(t, op, name));
  if (t.shape() != ref.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " has shape ",
                                                   t.shape().ToString(), "; expected ",
                                                   ref.shape().ToString(), " (as ", ref_name, ")"));
  }
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(ref, t, op, name));
  if (t.dtype() != ref.dtype()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " is ", TensorDesc(t), "; expected dtype ",
                     std::string(DTypeName(ref.dtype())), " (as ", ref_name, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckOperand(const Tensor& t, const char* op, const char* name) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(t, op, name));
  return CheckFloatOperandArg(t, op, name);
}

// inp: [N, 2H]; returns N and H.
absl::Status SwiGLUDims(const Tensor& inp, const char* op, int64_t* n, int64_t* h) {
  LOOM_RETURN_IF_ERROR(CheckOperand(inp, op, "inp"));
  int64_t cols = 0;
  MatrixDims(inp, n, &cols);
  if (inp.rank() < 1 || cols % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": inp has shape ", inp.shape().ToString(),
        "; expected [N, 2H] (gate columns then up columns, so an even last dimension)"));
  }
  *h = cols / 2;
  return absl::OkStatus();
}

absl::Status CheckMatrixLike(const Tensor& t, int64_t rows, int64_t cols, const Tensor& ref,
                             const char* op, const char* name, const std::string& why) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(t, op, name));
  LOOM_RETURN_IF_ERROR(CheckMatrixArg(t, rows, cols, op, name, why));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(ref, t, op, name));
  return CheckDTypeArg(t, ref.dtype(), op, name);
}

}  // namespace

absl::Status GeluForward(const Tensor& x, const Tensor& out) {
  constexpr const char* kOp = "GeluForward";
  LOOM_RETURN_IF_ERROR(CheckOperand(x, kOp, "x"));
  LOOM_RETURN_IF_ERROR(CheckLike(out, x, kOp, "out", "x"));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      cpu::GeluForward<float>(x.data_as<float>(), out.data_as<float>(), x.numel());
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (x.is_cuda()) return cuda::GeluForward(x, out);
#endif
  return NoBackendError(kOp, x);
}

absl::Status GeluBackward(const Tensor& dout, const Tensor& x, const Tensor& dx) {
  constexpr const char* kOp = "GeluBackward";
  LOOM_RETURN_IF_ERROR(CheckOperand(x, kOp, "x"));
  LOOM_RETURN_IF_ERROR(CheckLike(dout, x, kOp, "dout", "x"));
  LOOM_RETURN_IF_ERROR(CheckLike(dx, x, kOp, "dx", "x"));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      cpu::GeluBackward<float>(dout.data_as<float>(), x.data_as<float>(), dx.data_as<float>(),
                               x.numel());
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (x.is_cuda()) return cuda::GeluBackward(dout, x, dx);
#endif
  return NoBackendError(kOp, x);
}

absl::Status SwiGLUForward(const Tensor& inp, const Tensor& out) {
  constexpr const char* kOp = "SwiGLUForward";
  int64_t n = 0, h = 0;
  LOOM_RETURN_IF_ERROR(SwiGLUDims(inp, kOp, &n, &h));
  LOOM_RETURN_IF_ERROR(
      CheckMatrixLike(out, n, h, inp, kOp, "out",
                      absl::StrCat("half the columns of inp ", inp.shape().ToString())));
  if (RunsCpuKernels(inp)) {
    return RunCpuKernel(inp, [=]() -> absl::Status {
      cpu::SwiGLUForward<float>(inp.data_as<float>(), out.data_as<float>(), n, h);
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (inp.is_cuda()) return cuda::SwiGLUForward(inp, out, n, h);
#endif
  return NoBackendError(kOp, inp);
}

absl::Status SwiGLUBackward(const Tensor& dout, const Tensor& inp, const Tensor& dinp) {
  constexpr const char* kOp = "SwiGLUBackward";
  int64_t n = 0, h = 0;
  LOOM_RETURN_IF_ERROR(SwiGLUDims(inp, kOp, &n, &h));
  LOOM_RETURN_IF_ERROR(
      CheckMatrixLike(dout, n, h, inp, kOp, "dout",
                      absl::StrCat("half the columns of inp ", inp.shape().ToString())));
  LOOM_RETURN_IF_ERROR(CheckMatrixLike(dinp, n, 2 * h, inp, kOp, "dinp", "as inp"));
  if (RunsCpuKernels(inp)) {
    return RunCpuKernel(inp, [=]() -> absl::Status {
      cpu::SwiGLUBackward<float>(dout.data_as<float>(), inp.data_as<float>(), dinp.data_as<float>(),
                                 n, h);
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (inp.is_cuda()) return cuda::SwiGLUBackward(dout, inp, dinp, n, h);
#endif
  return NoBackendError(kOp, inp);
}

absl::Status Add(const Tensor& a, const Tensor& b, const Tensor& out) {
  constexpr const char* kOp = "Add";
  LOOM_RETURN_IF_ERROR(CheckOperand(a, kOp, "a"));
  LOOM_RETURN_IF_ERROR(CheckLike(b, a, kOp, "b", "a"));
  LOOM_RETURN_IF_ERROR(CheckLike(out, a, kOp, "out", "a"));
  if (RunsCpuKernels(a)) {
    return RunCpuKernel(a, [=]() -> absl::Status {
      cpu::Add<float>(a.data_as<float>(), b.data_as<float>(), out.data_as<float>(), a.numel());
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (a.is_cuda()) return cuda::Add(a, b, out);
#endif
  return NoBackendError(kOp, a);
}

}  // namespace loom::ops
