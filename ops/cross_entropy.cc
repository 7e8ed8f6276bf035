// Checks for ops/cross_entropy.h, then dispatch. logits: [N, V] (f32, or bf16 on CUDA);
// dlogits has the logits' dtype; every per-row tensor is f32 [N] except targets (i32 [N]).
// On the CPU the fused op also checks every target against valid_vocab; on the GPU that would
// cost a device-to-host copy, so an out-of-range target there yields a NaN loss instead.
#include "ops/cross_entropy.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"
#ifdef LOOM_WITH_CUDA
#include "ops/cuda/cross_entropy.h"
#endif

namespace loom::ops {
namespace {

struct Dims {
  int64_t n = 0, v = 0, valid = 0;
};

absl::StatusOr<Dims> CheckLogits(const std::string& p, const Tensor& logits, int64_t valid_vocab) {
  if (!logits.defined()) return absl::InvalidArgumentError(p + "logits is undefined");
  if (logits.rank() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "logits: expected [N, V], got ", logits.shape().ToString()));
  }
  if (RunsCpuKernels(logits)) {
    LOOM_RETURN_IF_ERROR(CheckDType(logits, DType::kF32, (p + "logits (CPU backend)").c_str()));
  } else if (logits.dtype() != DType::kF32 && logits.dtype() != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "logits: expected dtype f32 or bf16, got ", logits.DebugString()));
  }
  Dims d{logits.dim(0), logits.dim(1), valid_vocab < 0 ? logits.dim(1) : valid_vocab};
  if (d.valid > d.v) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "valid_vocab (", valid_vocab, ") exceeds the logits' width V = ", d.v));
  }
  return d;
}

absl::Status CheckRows(const std::string& what, const Tensor& t, const Tensor& logits, DType dtype,
                       int64_t n) {
  if (!t.defined()) return absl::InvalidArgumentError(what + ": tensor is undefined");
  LOOM_RETURN_IF_ERROR(CheckShape(t, Shape({n}), what.c_str()));
  LOOM_RETURN_IF_ERROR(CheckDType(t, dtype, what.c_str()));
  return CheckSameDevice(t, logits, what.c_str());
}

absl::Status CheckDLogits(const std::string& p, const Tensor* dlogits, const Tensor& logits) {
  if (!dlogits) return absl::OkStatus();
  const std::string what = p + "dlogits";
  if (!dlogits->defined()) return absl::InvalidArgumentError(what + ": tensor is undefined");
  LOOM_RETURN_IF_ERROR(CheckShape(*dlogits, logits.shape(), what.c_str()));
  LOOM_RETURN_IF_ERROR(CheckDType(*dlogits, logits.dtype(), what.c_str()));
  return CheckSameDevice(*dlogits, logits, what.c_str());
}

#ifndef LOOM_WITH_CUDA
absl::Status NoCuda(const std::string& p) {
  return absl::UnimplementedError(p + "CUDA tensor in a build without CUDA");
}
#endif

float* OptF(const Tensor* t) { return t ? t->data_as<float>() : nullptr; }

}  // namespace

absl::Status CrossEntropyForwardBackward(const Tensor& logits, const Tensor& targets,
                                         const Tensor& losses, const Tensor* dlogits, float dloss,
                                         int64_t valid_vocab) {
  const std::string p = "CrossEntropyForwardBackward: ";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckLogits(p, logits, valid_vocab));
  if (d.valid == 0 && d.n > 0) {
    return absl::InvalidArgumentError(p + "valid_vocab is 0: no real column to predict");
  }
  LOOM_RETURN_IF_ERROR(CheckRows(p + "targets", targets, logits, DType::kI32, d.n));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "losses", losses, logits, DType::kF32, d.n));
  LOOM_RETURN_IF_ERROR(CheckDLogits(p, dlogits, logits));
  if (RunsCpuKernels(logits)) {
    return RunCpuKernel(logits, [=, dlogits = OptionalTensor(dlogits)]() -> absl::Status {
      const int32_t* tg = targets.data_as<const int32_t>();
      for (int64_t r = 0; r < d.n; ++r) {
        if (tg[r] >= d.valid) {
          return absl::InvalidArgumentError(absl::StrCat(
              p, "targets[", r, "] = ", tg[r], " is outside the vocabulary [0, ", d.valid, ")"));
        }
      }
      cpu::CrossEntropyForwardBackward<float>(logits.data_as<const float>(), tg, d.n, d.v, d.valid,
                                              losses.data_as<float>(), OptF(dlogits), dloss);
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::CrossEntropyForwardBackward(logits, targets, d.n, d.v, d.valid, losses, dlogits,
                                           dloss);
#else
  return NoCuda(p);
#endif
}

absl::Status LogitsRowMax(const Tensor& logits, const Tensor& row_max, int64_t valid_vocab) {
  const std::string p = "LogitsRowMax: ";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckLogits(p, logits, valid_vocab));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "row_max", row_max, logits, DType::kF32, d.n));
  if (RunsCpuKernels(logits)) {
    return RunCpuKernel(logits, [=]() -> absl::Status {
      cpu::LogitsRowMax<float>(logits.data_as<const float>(), d.n, d.v, d.valid,
                               row_max.data_as<float>());
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::LogitsRowMax(logits, d.n, d.v, d.valid, row_max);
#else
  return NoCuda(p);
#endif
}

absl::Status LogitsSumExp(const Tensor& logits, const Tensor& global_max, const Tensor& sum_exp,
                          int64_t valid_vocab) {
  const std::string p = "LogitsSumExp: ";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckLogits(p, logits, valid_vocab));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "global_max", global_max, logits, DType::kF32, d.n));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "sum_exp", sum_exp, logits, DType::kF32, d.n));
  if (RunsCpuKernels(logits)) {
    return RunCpuKernel(logits, [=]() -> absl::Status {
      cpu::LogitsSumExp<float>(logits.data_as<const float>(), global_max.data_as<const float>(),
                               d.n, d.v, d.valid, sum_exp.data_as<float>());
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::LogitsSumExp(logits, global_max, d.n, d.v, d.valid, sum_exp);
#else
  return NoCuda(p);
#endif
}

absl::Status TargetLogit(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                         const Tensor& target_logit) {
  const std::string p = "TargetLogit: ";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckLogits(p, logits, -1));
  if (vocab_start < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "vocab_start must be >= 0, got ", vocab_start));
  }
  LOOM_RETURN_IF_ERROR(CheckRows(p + "targets", targets, logits, DType::kI32, d.n));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "target_logit", target_logit, logits, DType::kF32, d.n));
  if (RunsCpuKernels(logits)) {
    return RunCpuKernel(logits, [=]() -> absl::Status {
      cpu::TargetLogit<float>(logits.data_as<const float>(), targets.data_as<const int32_t>(),
                              vocab_start, d.n, d.v, target_logit.data_as<float>());
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::TargetLogit(logits, targets, vocab_start, d.n, d.v, target_logit);
#else
  return NoCuda(p);
#endif
}

absl::Status VocabParallelCrossEntropyFinish(const Tensor& logits, const Tensor& targets,
                                             int64_t vocab_start, const Tensor& global_max,
                                             const Tensor& global_sum_exp,
                                             const Tensor& global_target_logit,
                                             const Tensor& losses, const Tensor* dlogits,
                                             float dloss, int64_t valid_vocab) {
  const std::string p = "VocabParallelCrossEntropyFinish: ";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckLogits(p, logits, valid_vocab));
  if (vocab_start < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "vocab_start must be >= 0, got ", vocab_start));
  }
  LOOM_RETURN_IF_ERROR(CheckRows(p + "targets", targets, logits, DType::kI32, d.n));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "global_max", global_max, logits, DType::kF32, d.n));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "global_sum_exp", global_sum_exp, logits, DType::kF32, d.n));
  LOOM_RETURN_IF_ERROR(
      CheckRows(p + "global_target_logit", global_target_logit, logits, DType::kF32, d.n));
  LOOM_RETURN_IF_ERROR(CheckRows(p + "losses", losses, logits, DType::kF32, d.n));
  LOOM_RETURN_IF_ERROR(CheckDLogits(p, dlogits, logits));
  if (RunsCpuKernels(logits)) {
    return RunCpuKernel(logits, [=, dlogits = OptionalTensor(dlogits)]() -> absl::Status {
      cpu::VocabParallelCrossEntropyFinish<float>(
          logits.data_as<const float>(), targets.data_as<const int32_t>(), vocab_start,
          global_max.data_as<const float>(), global_sum_exp.data_as<const float>(),
          global_target_logit.data_as<const float>(), d.n, d.v, d.valid, losses.data_as<float>(),
          OptF(dlogits), dloss);
      return absl::OkStatus();
    });
  }
#ifdef LOOM_WITH_CUDA
  return cuda::VocabParallelCrossEntropyFinish(logits, targets, vocab_start, global_max,
                                               global_sum_exp, global_target_logit, d.n, d.v,
                                               d.valid, losses, dlogits, dloss);
#else
  return NoCuda(p);
#endif
}

}  // namespace loom::ops
