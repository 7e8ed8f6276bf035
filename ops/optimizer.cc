// Checks for ops/optimizer.h and dispatch to the CPU or CUDA backend. These ops work on flat
// buffers: tensors are matched by element count, not shape. Both backends take the same
// dtypes (the CPU accepts the 16-bit formats here so it can serve as the reference for them).
#include "ops/optimizer.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "ops/arg_checks.h"
#include "ops/cpu/optimizer.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"

#ifdef LOOM_WITH_CUDA
#include "ops/cuda/optimizer.h"
#endif

namespace loom::ops {
namespace {

absl::Status CheckFlat(const Tensor& t, const Tensor& ref, const char* op, const char* name,
                       const char* ref_name) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(t, op, name));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(ref, t, op, name));
  return CheckNumelArg(t, ref.numel(), op, name,
                       absl::StrCat("as ", ref_name, " ", ref.shape().ToString()));
}

absl::Status CheckAdamWParams(const AdamWParams& p, const char* op) {
  auto bad = [op](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what));
  };
  if (p.step < 1) return bad(absl::StrCat("step = ", p.step, "; expected >= 1 (1-based)"));
  if (!(p.beta1 >= 0.0f && p.beta1 < 1.0f)) {
    return bad(absl::StrCat("beta1 = ", p.beta1, "; expected in [0, 1)"));
  }
  if (!(p.beta2 >= 0.0f && p.beta2 < 1.0f)) {
    return bad(absl::StrCat("beta2 = ", p.beta2, "; expected in [0, 1)"));
  }
  if (!(p.eps >= 0.0f)) return bad(absl::StrCat("eps = ", p.eps, "; expected >= 0"));
  if (!std::isfinite(p.lr)) return bad(absl::StrCat("lr = ", p.lr, "; expected a finite value"));
  if (!std::isfinite(p.weight_decay)) {
    return bad(absl::StrCat("weight_decay = ", p.weight_decay, "; expected a finite value"));
  }
  if (!std::isfinite(p.grad_scale)) {
    return bad(absl::StrCat("grad_scale = ", p.grad_scale, "; expected a finite value"));
  }
  return absl::OkStatus();
}

template <typename G>
void CpuAdamW(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
              const AdamWParams& p, const Tensor* copy) {
  float* w = params.data_as<float>();
  const G* g = grads.data_as<G>();
  const int64_t n = params.numel();
  if (copy != nullptr && copy->dtype() == DType::kBF16) {
    cpu::AdamWUpdate<G, bf16>(w, g, m.data_as<float>(), v.data_as<float>(), n, p,
                              copy->data_as<bf16>());
  } else {
    cpu::AdamWUpdate<G, float>(w, g, m.data_as<float>(), v.data_as<float>(), n, p,
                               copy != nullptr ? copy->data_as<float>() : nullptr);
  }
}

constexpr std::initializer_list<DType> kFloatTypes = {DType::kF32, DType::kBF16, DType::kF16};

}  // namespace

absl::Status AdamWUpdate(const Tensor& params, const Tensor& grads, const Tensor& m,
                         const Tensor& v, const AdamWParams& p, const Tensor* params_copy) {
  constexpr const char* kOp = "AdamWUpdate";
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(params, kOp, "params"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(params, DType::kF32, kOp, "params"));
  LOOM_RETURN_IF_ERROR(CheckFlat(grads, params, kOp, "grads", "params"));
  LOOM_RETURN_IF_ERROR(CheckDTypeInArg(grads, {DType::kF32, DType::kBF16}, kOp, "grads"));
  LOOM_RETURN_IF_ERROR(CheckFlat(m, params, kOp, "m", "params"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(m, DType::kF32, kOp, "m"));
  LOOM_RETURN_IF_ERROR(CheckFlat(v, params, kOp, "v", "params"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(v, DType::kF32, kOp, "v"));
  if (params_copy != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckFlat(*params_copy, params, kOp, "params_copy", "params"));
    LOOM_RETURN_IF_ERROR(
        CheckDTypeInArg(*params_copy, {DType::kF32, DType::kBF16}, kOp, "params_copy"));
  }
  LOOM_RETURN_IF_ERROR(CheckAdamWParams(p, kOp));
  if (RunsCpuKernels(params)) {
    return RunCpuKernel(params, [=, params_copy = OptionalTensor(params_copy)]() -> absl::Status {
      if (grads.dtype() == DType::kBF16) {
        CpuAdamW<bf16>(params, grads, m, v, p, params_copy);
      } else {
        CpuAdamW<float>(params, grads, m, v, p, params_copy);
      }
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (params.is_cuda()) return cuda::AdamWUpdate(params, grads, m, v, p, params_copy);
#endif
  return NoBackendError(kOp, params);
}

absl::Status SumOfSquaresAccumulate(const Tensor& x, const Tensor& out) {
  constexpr const char* kOp = "SumOfSquaresAccumulate";
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(x, kOp, "x"));
  LOOM_RETURN_IF_ERROR(CheckDTypeInArg(x, kFloatTypes, kOp, "x"));
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(out, kOp, "out"));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(x, out, kOp, "out"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(out, DType::kF32, kOp, "out"));
  LOOM_RETURN_IF_ERROR(CheckNumelArg(out, 1, kOp, "out", "a single f32 accumulator"));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      double sum = 0.0;
      switch (x.dtype()) {
        case DType::kBF16:
          sum = cpu::SumOfSquares<bf16>(x.data_as<bf16>(), x.numel());
          break;
        case DType::kF16:
          sum = cpu::SumOfSquares<f16>(x.data_as<f16>(), x.numel());
          break;
        default:
          sum = cpu::SumOfSquares<float>(x.data_as<float>(), x.numel());
          break;
      }
      float* acc = out.data_as<float>();
      acc[0] = static_cast<float>(static_cast<double>(acc[0]) + sum);
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (x.is_cuda()) return cuda::SumOfSquaresAccumulate(x, out);
#endif
  return NoBackendError(kOp, x);
}

absl::Status Scale(const Tensor& x, float factor) {
  constexpr const char* kOp = "Scale";
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(x, kOp, "x"));
  LOOM_RETURN_IF_ERROR(CheckDTypeInArg(x, kFloatTypes, kOp, "x"));
  if (RunsCpuKernels(x)) {
    return RunCpuKernel(x, [=]() -> absl::Status {
      switch (x.dtype()) {
        case DType::kBF16:
          cpu::Scale<bf16>(x.data_as<bf16>(), x.numel(), factor);
          break;
        case DType::kF16:
          cpu::Scale<f16>(x.data_as<f16>(), x.numel(), factor);
          break;
        default:
          cpu::Scale<float>(x.data_as<float>(), x.numel(), factor);
          break;
      }
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (x.is_cuda()) return cuda::Scale(x, factor);
#endif
  return NoBackendError(kOp, x);
}

namespace {

template <typename S>
void CpuCastFrom(const Tensor& src, const Tensor& dst) {
  const S* s = src.data_as<S>();
  switch (dst.dtype()) {
    case DType::kBF16:
      cpu::Cast<S, bf16>(s, dst.data_as<bf16>(), src.numel());
      break;
    case DType::kF16:
      cpu::Cast<S, f16>(s, dst.data_as<f16>(), src.numel());
      break;
    default:
      cpu::Cast<S, float>(s, dst.data_as<float>(), src.numel());
      break;
  }
}

}  // namespace

absl::Status Cast(const Tensor& src, const Tensor& dst) {
  constexpr const char* kOp = "Cast";
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(src, kOp, "src"));
  LOOM_RETURN_IF_ERROR(CheckDTypeInArg(src, kFloatTypes, kOp, "src"));
  LOOM_RETURN_IF_ERROR(CheckFlat(dst, src, kOp, "dst", "src"));
  LOOM_RETURN_IF_ERROR(CheckDTypeInArg(dst, kFloatTypes, kOp, "dst"));
  if (RunsCpuKernels(src)) {
    return RunCpuKernel(src, [=]() -> absl::Status {
      switch (src.dtype()) {
        case DType::kBF16:
          CpuCastFrom<bf16>(src, dst);
          break;
        case DType::kF16:
          CpuCastFrom<f16>(src, dst);
          break;
        default:
          CpuCastFrom<float>(src, dst);
          break;
      }
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  if (src.is_cuda()) return cuda::Cast(src, dst);
#endif
  return NoBackendError(kOp, src);
}

}  // namespace loom::ops
