// Shape / dtype checks for ops/linear.h and dispatch to the CPU or CUDA backend.
// dtypes: CPU all f32. CUDA: inp, weight, dout, dinp share one dtype (f32 or bf16); out,
// pre_gelu, bias, dweight and dbias are that dtype or f32 (bf16 operands, fp32 results).
#include "ops/linear.h"

#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "ops/arg_checks.h"
#include "ops/cpu/linear.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"

#ifdef LOOM_WITH_CUDA
#include "ops/cuda/linear.h"
#endif

namespace loom::ops {
namespace {

// A GEMM result: the operand dtype, or f32 on CUDA.
absl::Status CheckResultDType(const Tensor& t, DType operand, const char* op, const char* name) {
  if (t.is_cuda()) return CheckDTypeInArg(t, {operand, DType::kF32}, op, name);
  return CheckDTypeArg(t, operand, op, name);
}

absl::Status FitsBlasInt(int64_t v, const char* op, const char* what) {
  if (v > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", what, " = ", v, " exceeds the BLAS 32-bit index range"));
  }
  return absl::OkStatus();
}

// inp [N, IC] and weight [OC, IC]; returns N, IC, OC.
absl::Status LinearDims(const Tensor& inp, const Tensor& weight, const char* op, int64_t* n,
                        int64_t* ic, int64_t* oc) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(inp, op, "inp"));
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(weight, op, "weight"));
  if (inp.rank() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": inp must be [N, IC], got ", TensorDesc(inp)));
  }
  MatrixDims(inp, n, ic);
  if (weight.rank() != 2 || weight.dim(1) != *ic) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": weight has shape ",
                                                   weight.shape().ToString(), "; expected [OC, ",
                                                   *ic, "] to match inp ", TensorDesc(inp)));
  }
  *oc = weight.dim(0);
  return absl::OkStatus();
}

absl::Status CheckBiasLike(const Tensor& t, int64_t oc, const Tensor& weight, const char* op,
                           const char* name) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(t, op, name));
  if (t.rank() != 1 || t.dim(0) != oc) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " has shape ", t.shape().ToString(), "; expected [", oc,
                     "] (OC from weight ", weight.shape().ToString(), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckBlasDims(int64_t m, int64_t n, int64_t k, const char* op) {
  LOOM_RETURN_IF_ERROR(FitsBlasInt(m, op, "rows"));
  LOOM_RETURN_IF_ERROR(FitsBlasInt(n, op, "columns"));
  return FitsBlasInt(k, op, "inner dimension");
}

}  // namespace

absl::Status LinearForward(const Tensor& inp, const Tensor& weight, const Tensor* bias,
                           const Tensor& out, const Tensor* pre_gelu) {
  constexpr const char* kOp = "LinearForward";
  int64_t n = 0, ic = 0, oc = 0;
  LOOM_RETURN_IF_ERROR(LinearDims(inp, weight, kOp, &n, &ic, &oc));
  const std::string why = absl::StrCat("N from inp ", inp.shape().ToString(), ", OC from weight ",
                                       weight.shape().ToString());
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(out, kOp, "out"));
  LOOM_RETURN_IF_ERROR(CheckMatrixArg(out, n, oc, kOp, "out", why));
  if (bias != nullptr) LOOM_RETURN_IF_ERROR(CheckBiasLike(*bias, oc, weight, kOp, "bias"));
  if (pre_gelu != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckDefinedArg(*pre_gelu, kOp, "pre_gelu"));
    LOOM_RETURN_IF_ERROR(CheckMatrixArg(*pre_gelu, n, oc, kOp, "pre_gelu", why));
  }
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, weight, kOp, "weight"));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, out, kOp, "out"));
  if (bias != nullptr) LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, *bias, kOp, "bias"));
  if (pre_gelu != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, *pre_gelu, kOp, "pre_gelu"));
  }
  LOOM_RETURN_IF_ERROR(CheckFloatOperandArg(inp, kOp, "inp"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(weight, inp.dtype(), kOp, "weight (dtype of inp)"));
  LOOM_RETURN_IF_ERROR(CheckResultDType(out, inp.dtype(), kOp, "out"));
  if (bias != nullptr) LOOM_RETURN_IF_ERROR(CheckResultDType(*bias, inp.dtype(), kOp, "bias"));
  if (pre_gelu != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckDTypeArg(*pre_gelu, out.dtype(), kOp, "pre_gelu (dtype of out)"));
  }

  if (RunsCpuKernels(inp)) {
    LOOM_RETURN_IF_ERROR(CheckBlasDims(n, oc, ic, kOp));
    return RunCpuKernel(
        inp,
        [=, bias = OptionalTensor(bias), pre_gelu = OptionalTensor(pre_gelu)]() -> absl::Status {
          cpu::LinearForward<float>(
              inp.data_as<float>(), weight.data_as<float>(),
              bias != nullptr ? bias->data_as<float>() : nullptr, out.data_as<float>(),
              pre_gelu != nullptr ? pre_gelu->data_as<float>() : nullptr, n, ic, oc);
          return absl::OkStatus();
        });
  }
#ifdef LOOM_WITH_CUDA
  if (inp.is_cuda()) return cuda::LinearForward(inp, weight, bias, out, pre_gelu, n, ic, oc);
#endif
  return NoBackendError(kOp, inp);
}

absl::Status LinearBackward(const Tensor& dout, const Tensor& inp, const Tensor& weight,
                            const Tensor* dinp, const Tensor& dweight, const Tensor* dbias) {
  constexpr const char* kOp = "LinearBackward";
  int64_t n = 0, ic = 0, oc = 0;
  LOOM_RETURN_IF_ERROR(LinearDims(inp, weight, kOp, &n, &ic, &oc));
  const std::string why = absl::StrCat("N from inp ", inp.shape().ToString(), ", OC from weight ",
                                       weight.shape().ToString());
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(dout, kOp, "dout"));
  LOOM_RETURN_IF_ERROR(CheckMatrixArg(dout, n, oc, kOp, "dout", why));
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(dweight, kOp, "dweight"));
  if (dweight.shape() != weight.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": dweight has shape ",
                                                   dweight.shape().ToString(), "; expected ",
                                                   weight.shape().ToString(), " (as weight)"));
  }
  if (dinp != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckDefinedArg(*dinp, kOp, "dinp"));
    LOOM_RETURN_IF_ERROR(CheckMatrixArg(*dinp, n, ic, kOp, "dinp", "as inp"));
  }
  if (dbias != nullptr) LOOM_RETURN_IF_ERROR(CheckBiasLike(*dbias, oc, weight, kOp, "dbias"));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, dout, kOp, "dout"));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, weight, kOp, "weight"));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, dweight, kOp, "dweight"));
  if (dinp != nullptr) LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, *dinp, kOp, "dinp"));
  if (dbias != nullptr) LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(inp, *dbias, kOp, "dbias"));
  LOOM_RETURN_IF_ERROR(CheckFloatOperandArg(inp, kOp, "inp"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(weight, inp.dtype(), kOp, "weight (dtype of inp)"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(dout, inp.dtype(), kOp, "dout (dtype of inp)"));
  if (dinp != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckDTypeArg(*dinp, inp.dtype(), kOp, "dinp (dtype of inp)"));
  }
  LOOM_RETURN_IF_ERROR(CheckResultDType(dweight, inp.dtype(), kOp, "dweight"));
  if (dbias != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckResultDType(*dbias, inp.dtype(), kOp, "dbias"));
  }

  if (RunsCpuKernels(inp)) {
    LOOM_RETURN_IF_ERROR(CheckBlasDims(n, oc, ic, kOp));
    return RunCpuKernel(
        inp, [=, dinp = OptionalTensor(dinp), dbias = OptionalTensor(dbias)]() -> absl::Status {
          cpu::LinearBackward<float>(
              dout.data_as<float>(), inp.data_as<float>(), weight.data_as<float>(),
              dinp != nullptr ? dinp->data_as<float>() : nullptr, dweight.data_as<float>(),
              dbias != nullptr ? dbias->data_as<float>() : nullptr, n, ic, oc);
          return absl::OkStatus();
        });
  }
#ifdef LOOM_WITH_CUDA
  if (inp.is_cuda()) {
    return cuda::LinearBackward(dout, inp, weight, dinp, dweight, dbias, n, ic, oc);
  }
#endif
  return NoBackendError(kOp, inp);
}

absl::Status LinearBackwardInput(const Tensor& dout, const Tensor& weight, const Tensor& dinp) {
  // dout [N, OC] @ weight [OC, IC]: LinearBackward's dinp GEMM, with Gemm's shape checks.
  return Gemm(dout, false, weight, false, dinp);
}

absl::Status LinearBackwardWeight(const Tensor& dout, const Tensor& inp, const Tensor& weight,
                                  const Tensor& dweight, const Tensor* dbias) {
  return LinearBackward(dout, inp, weight, nullptr, dweight, dbias);
}

absl::Status Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                  float alpha, float beta) {
  constexpr const char* kOp = "Gemm";
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(a, kOp, "a"));
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(b, kOp, "b"));
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(c, kOp, "c"));
  if (a.rank() != 2 || b.rank() != 2 || c.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": a, b and c must be matrices, got a ",
                                                   TensorDesc(a), ", b ", TensorDesc(b), ", c ",
                                                   TensorDesc(c)));
  }
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  if (k != kb) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": inner dimensions differ: op(a) is [", m, ", ", k, "] (a ",
                     a.shape().ToString(), trans_a ? " transposed" : "", "), op(b) is [", kb, ", ",
                     n, "] (b ", b.shape().ToString(), trans_b ? " transposed" : "", ")"));
  }
  if (c.dim(0) != m || c.dim(1) != n) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": c has shape ", c.shape().ToString(),
                                                   "; expected [", m, ", ", n,
                                                   "] (rows of op(a), columns of op(b))"));
  }
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(a, b, kOp, "b"));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(a, c, kOp, "c"));
  LOOM_RETURN_IF_ERROR(CheckFloatOperandArg(a, kOp, "a"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(b, a.dtype(), kOp, "b (dtype of a)"));
  LOOM_RETURN_IF_ERROR(CheckResultDType(c, a.dtype(), kOp, "c"));
  if (RunsCpuKernels(a)) {
    LOOM_RETURN_IF_ERROR(CheckBlasDims(m, n, k, kOp));
    return RunCpuKernel(a, [=]() -> absl::Status {
      cpu::Gemm<float>(a.data_as<float>(), trans_a, b.data_as<float>(), trans_b, c.data_as<float>(),
                       m, n, k, alpha, beta);
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (a.is_cuda()) return cuda::Gemm(a, trans_a, b, trans_b, c, alpha, beta, m, n, k);
#endif
  return NoBackendError(kOp, a);
}

void SetTf32ForFp32Gemms(bool on) {
#ifdef LOOM_WITH_CUDA
  cuda::SetFp32GemmTf32(on);
#else
  (void)on;
#endif
}

}  // namespace loom::ops
