// Status helpers: loom reports errors as absl::Status values. The check macros below turn a
// failing CUDA / cuBLAS / NCCL / MPI call into a Status that carries the call's text, the file
// and the line, so a user sees exactly which call failed and where. Only main() turns a Status
// into an exit code.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace loom {

// Builds "<call> failed at file:line: <detail>" with the given code.
absl::Status CallError(absl::StatusCode code, const char* call, const char* file, int line,
                       const std::string& detail);

}  // namespace loom

#define LOOM_STATUS_CONCAT_INNER(a, b) a##b
#define LOOM_STATUS_CONCAT(a, b) LOOM_STATUS_CONCAT_INNER(a, b)

#define LOOM_RETURN_IF_ERROR(expr)                        \
  do {                                                    \
    ::absl::Status loom_status_ = (expr);                 \
    if (!loom_status_.ok()) return loom_status_;          \
  } while (0)

#define LOOM_ASSIGN_OR_RETURN(lhs, rexpr) \
  LOOM_ASSIGN_OR_RETURN_IMPL(LOOM_STATUS_CONCAT(loom_statusor_, __LINE__), lhs, rexpr)
#define LOOM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                               \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

// MPI: any return code other than MPI_SUCCESS becomes an Internal error with MPI's own text.
#define LOOM_MPI_CHECK(call)                                                          \
  do {                                                                                \
    int loom_mpi_rc_ = (call);                                                        \
    if (loom_mpi_rc_ != MPI_SUCCESS) {                                                \
      char loom_mpi_msg_[MPI_MAX_ERROR_STRING];                                       \
      int loom_mpi_len_ = 0;                                                          \
      MPI_Error_string(loom_mpi_rc_, loom_mpi_msg_, &loom_mpi_len_);                  \
      return ::loom::CallError(::absl::StatusCode::kInternal, #call, __FILE__, __LINE__, \
                               std::string(loom_mpi_msg_, loom_mpi_len_));            \
    }                                                                                 \
  } while (0)

// CUDA runtime.
#define LOOM_CUDA_CHECK(call)                                                           \
  do {                                                                                  \
    cudaError_t loom_cuda_rc_ = (call);                                                 \
    if (loom_cuda_rc_ != cudaSuccess) {                                                 \
      return ::loom::CallError(::absl::StatusCode::kInternal, #call, __FILE__, __LINE__, \
                               cudaGetErrorString(loom_cuda_rc_));                      \
    }                                                                                   \
  } while (0)

// cuBLAS / cuBLASLt (both use cublasStatus_t).
#define LOOM_CUBLAS_CHECK(call)                                                           \
  do {                                                                                    \
    cublasStatus_t loom_cublas_rc_ = (call);                                              \
    if (loom_cublas_rc_ != CUBLAS_STATUS_SUCCESS) {                                       \
      return ::loom::CallError(::absl::StatusCode::kInternal, #call, __FILE__, __LINE__,   \
                               cublasGetStatusString(loom_cublas_rc_));                   \
    }                                                                                     \
  } while (0)

// NCCL.
#define LOOM_NCCL_CHECK(call)                                                           \
  do {                                                                                  \
    ncclResult_t loom_nccl_rc_ = (call);                                                \
    if (loom_nccl_rc_ != ncclSuccess) {                                                 \
      return ::loom::CallError(::absl::StatusCode::kInternal, #call, __FILE__, __LINE__, \
                               ncclGetErrorString(loom_nccl_rc_));                      \
    }                                                                                   \
  } while (0)
