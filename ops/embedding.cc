// Shape / dtype checks for ops/embedding.h and dispatch to the CPU or CUDA backend.
// dtypes: tokens i32. CPU: everything else f32. CUDA: wte, wpe, out share one dtype (f32 or
// bf16); dout is f32 or bf16; dwte and dwpe share one dtype, dout's or f32.
#include "ops/embedding.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/arg_checks.h"
#include "ops/cpu/embedding.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"

#ifdef LOOM_WITH_CUDA
#include "ops/cuda/embedding.h"
#endif

namespace loom::ops {
namespace {

struct EmbeddingDims {
  int64_t b = 0, t = 0, c = 0, v = 0;
};

absl::Status CheckTokens(const Tensor& tokens, const char* op, int64_t vocab_start,
                         EmbeddingDims* d) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(tokens, op, "tokens"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(tokens, DType::kI32, op, "tokens"));
  if (tokens.rank() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": tokens has shape ", tokens.shape().ToString(), "; expected [B, T]"));
  }
  if (vocab_start < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": vocab_start = ", vocab_start, "; expected >= 0"));
  }
  d->b = tokens.dim(0);
  d->t = tokens.dim(1);
  return absl::OkStatus();
}

// A [rows, C] table (wte / wpe or their gradients).
absl::Status CheckTable(const Tensor& t, const Tensor& tokens, const char* op, const char* name,
                        const char* rows_name) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(t, op, name));
  if (t.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " has shape ", t.shape().ToString(), "; expected [", rows_name, ", C]"));
  }
  return CheckSameDeviceArg(tokens, t, op, name);
}

// wpe (or dwpe): [maxT >= T, C].
absl::Status CheckPositions(const Tensor& t, const EmbeddingDims& d, const char* op,
                            const char* name) {
  if (t.rank() != 2 || t.dim(0) < d.t || t.dim(1) != d.c) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " has shape ", t.shape().ToString(), "; expected [maxT >= ", d.t, ", ", d.c,
        "] (T from tokens, C from ", "the token table)"));
  }
  return absl::OkStatus();
}

// positions (optional): i32 [B, T] beside the tokens.
absl::Status CheckPositionIds(const Tensor* positions, const Tensor& tokens, const char* op) {
  if (positions == nullptr) return absl::OkStatus();
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(*positions, op, "positions"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(*positions, DType::kI32, op, "positions"));
  if (positions->shape() != tokens.shape()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": positions has shape ", positions->shape().ToString(),
                     "; expected the tokens' ", tokens.shape().ToString()));
  }
  return CheckSameDeviceArg(tokens, *positions, op, "positions");
}

// On the CPU (inside the kernel's task, where the memory is readable): every position id is a
// row of the table, so a bad one is an error rather than a read or write out of bounds.
absl::Status CheckPositionRange(const int32_t* positions, int64_t n, int64_t rows, const char* op,
                                const char* table) {
  if (positions == nullptr) return absl::OkStatus();
  for (int64_t i = 0; i < n; ++i) {
    if (positions[i] < 0 || positions[i] >= rows) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": positions[", i, "] = ", positions[i],
                                                     " is outside [0, ", rows, "), the rows of ",
                                                     table));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EmbeddingForward(const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                              const Tensor& out, int64_t vocab_start, const Tensor* positions) {
  constexpr const char* kOp = "EmbeddingForward";
  EmbeddingDims d;
  LOOM_RETURN_IF_ERROR(CheckTokens(tokens, kOp, vocab_start, &d));
  LOOM_RETURN_IF_ERROR(CheckPositionIds(positions, tokens, kOp));
  if (wpe == nullptr) positions = nullptr;  // no position rows to pick
  LOOM_RETURN_IF_ERROR(CheckTable(wte, tokens, kOp, "wte", "V"));
  d.v = wte.dim(0);
  d.c = wte.dim(1);
  LOOM_RETURN_IF_ERROR(CheckFloatOperandArg(wte, kOp, "wte"));
  if (wpe != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckTable(*wpe, tokens, kOp, "wpe", "maxT"));
    LOOM_RETURN_IF_ERROR(CheckPositions(*wpe, d, kOp, "wpe"));
    LOOM_RETURN_IF_ERROR(CheckDTypeArg(*wpe, wte.dtype(), kOp, "wpe (dtype of wte)"));
  }
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(out, kOp, "out"));
  LOOM_RETURN_IF_ERROR(
      CheckMatrixArg(out, d.b * d.t, d.c, kOp, "out",
                     absl::StrCat("[B, T, C]: B*T from tokens ", tokens.shape().ToString(),
                                  ", C from wte ", wte.shape().ToString())));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(tokens, out, kOp, "out"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(out, wte.dtype(), kOp, "out (dtype of wte)"));
  if (RunsCpuKernels(tokens)) {
    return RunCpuKernel(
        tokens, [=, wpe = OptionalTensor(wpe), pos = OptionalTensor(positions)]() -> absl::Status {
          const int32_t* pos_ids = pos != nullptr ? pos->data_as<int32_t>() : nullptr;
          if (wpe != nullptr) {
            LOOM_RETURN_IF_ERROR(CheckPositionRange(pos_ids, d.b * d.t, wpe->dim(0), kOp, "wpe"));
          }
          cpu::EmbeddingForward<float>(tokens.data_as<int32_t>(), wte.data_as<float>(),
                                       wpe != nullptr ? wpe->data_as<float>() : nullptr,
                                       out.data_as<float>(), d.b, d.t, d.c, d.v, vocab_start,
                                       pos_ids);
          return absl::OkStatus();
        });
  }
#ifdef LOOM_WITH_CUDA
  if (tokens.is_cuda()) {
    return cuda::EmbeddingForward(tokens, wte, wpe, out, d.b, d.t, d.c, d.v, vocab_start,
                                  positions);
  }
#endif
  return NoBackendError(kOp, tokens);
}

absl::Status EmbeddingBackward(const Tensor& tokens, const Tensor& dout, const Tensor& dwte,
                               const Tensor* dwpe, int64_t vocab_start, const Tensor* positions) {
  constexpr const char* kOp = "EmbeddingBackward";
  EmbeddingDims d;
  LOOM_RETURN_IF_ERROR(CheckTokens(tokens, kOp, vocab_start, &d));
  LOOM_RETURN_IF_ERROR(CheckPositionIds(positions, tokens, kOp));
  if (dwpe == nullptr) positions = nullptr;
  LOOM_RETURN_IF_ERROR(CheckTable(dwte, tokens, kOp, "dwte", "V"));
  d.v = dwte.dim(0);
  d.c = dwte.dim(1);
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(dout, kOp, "dout"));
  LOOM_RETURN_IF_ERROR(
      CheckMatrixArg(dout, d.b * d.t, d.c, kOp, "dout",
                     absl::StrCat("[B, T, C]: B*T from tokens ", tokens.shape().ToString(),
                                  ", C from dwte ", dwte.shape().ToString())));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(tokens, dout, kOp, "dout"));
  LOOM_RETURN_IF_ERROR(CheckFloatOperandArg(dout, kOp, "dout"));
  if (dwte.is_cuda()) {
    LOOM_RETURN_IF_ERROR(CheckDTypeInArg(dwte, {dout.dtype(), DType::kF32}, kOp, "dwte"));
  } else {
    LOOM_RETURN_IF_ERROR(CheckDTypeArg(dwte, DType::kF32, kOp, "dwte"));
  }
  if (dwpe != nullptr) {
    LOOM_RETURN_IF_ERROR(CheckTable(*dwpe, tokens, kOp, "dwpe", "maxT"));
    LOOM_RETURN_IF_ERROR(CheckPositions(*dwpe, d, kOp, "dwpe"));
    LOOM_RETURN_IF_ERROR(CheckDTypeArg(*dwpe, dwte.dtype(), kOp, "dwpe (dtype of dwte)"));
  }
  if (RunsCpuKernels(tokens)) {
    return RunCpuKernel(
        tokens,
        [=, dwpe = OptionalTensor(dwpe), pos = OptionalTensor(positions)]() -> absl::Status {
          const int32_t* pos_ids = pos != nullptr ? pos->data_as<int32_t>() : nullptr;
          if (dwpe != nullptr) {
            LOOM_RETURN_IF_ERROR(CheckPositionRange(pos_ids, d.b * d.t, dwpe->dim(0), kOp, "dwpe"));
          }
          cpu::EmbeddingBackward<float>(tokens.data_as<int32_t>(), dout.data_as<float>(),
                                        dwte.data_as<float>(),
                                        dwpe != nullptr ? dwpe->data_as<float>() : nullptr, d.b,
                                        d.t, d.c, d.v, vocab_start, pos_ids);
          return absl::OkStatus();
        });
  }
#ifdef LOOM_WITH_CUDA
  if (tokens.is_cuda()) {
    return cuda::EmbeddingBackward(tokens, dout, dwte, dwpe, d.b, d.t, d.c, d.v, vocab_start,
                                   positions);
  }
#endif
  return NoBackendError(kOp, tokens);
}

}  // namespace loom::ops
