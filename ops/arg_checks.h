// Argument checks shared by the ops/<family>.cc dispatchers. Every failure is an
// InvalidArgument that names the op, the argument, what it got (dtype, shape, device) and what
// was expected, so a caller can fix the call from the message alone.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// "bf16[4, 8]".
std::string TensorDesc(const Tensor& t);

absl::Status CheckDefinedArg(const Tensor& t, const char* op, const char* name);
// t lives on the same device as ref (the op's first input).
absl::Status CheckSameDeviceArg(const Tensor& ref, const Tensor& t, const char* op,
                                const char* name);
absl::Status CheckDTypeArg(const Tensor& t, DType want, const char* op, const char* name);
absl::Status CheckDTypeInArg(const Tensor& t, std::initializer_list<DType> allowed, const char* op,
                             const char* name);
// An activation / weight operand: f32 on the CPU (the CPU backend is fp32 only), f32 or bf16
// on CUDA.
absl::Status CheckFloatOperandArg(const Tensor& t, const char* op, const char* name);

// Rows and columns of t seen as a matrix: the last dim is the columns, the leading dims are
// flattened into rows (a rank-1 tensor is one row).
void MatrixDims(const Tensor& t, int64_t* rows, int64_t* cols);
// t is [..., cols] with rows * cols elements; `why` says where rows / cols come from.
absl::Status CheckMatrixArg(const Tensor& t, int64_t rows, int64_t cols, const char* op,
                            const char* name, const std::string& why);
// numel of t is n (flat buffers).
absl::Status CheckNumelArg(const Tensor& t, int64_t n, const char* op, const char* name,
                           const std::string& why);

// Unimplemented: no backend for the device t lives on.
absl::Status NoBackendError(const char* op, const Tensor& t);

}  // namespace loom::ops
