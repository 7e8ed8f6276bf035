#include "ops/cuda/context.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

absl::Status CreateContext(int device, DeviceContext* ctx) {
  ctx->device = device;
  LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&ctx->num_sms, cudaDevAttrMultiProcessorCount, device));
  LOOM_CUBLAS_CHECK(cublasCreate(&ctx->cublas));
  LOOM_CUBLAS_CHECK(cublasLtCreate(&ctx->cublaslt));
  LOOM_CUDA_CHECK(cudaMalloc(&ctx->workspace, kCublasWorkspaceBytes));
  ctx->workspace_bytes = kCublasWorkspaceBytes;
  // cuBLAS (non-Lt) calls may use their own workspace; give them the same one so they never
  // allocate behind the caching allocator's back.
  LOOM_CUBLAS_CHECK(cublasSetWorkspace(ctx->cublas, ctx->workspace, ctx->workspace_bytes));
  LOOM_CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
  return absl::OkStatus();
}

std::mutex& ContextMutex() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}

// Never destroyed: handles outliving static destruction is harmless, while destroying them
// after the CUDA runtime has shut down is not.
std::vector<std::unique_ptr<DeviceContext>>& Contexts() {
  static auto* contexts = new std::vector<std::unique_ptr<DeviceContext>>();
  return *contexts;
}

}  // namespace

absl::StatusOr<DeviceContext*> GetDeviceContext(int device) {
  int count = 0;
  LOOM_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " requested but ", count, " are visible"));
  }
  LOOM_CUDA_CHECK(cudaSetDevice(device));
  std::lock_guard<std::mutex> lock(ContextMutex());
  auto& contexts = Contexts();
  if (contexts.size() < static_cast<size_t>(count)) contexts.resize(count);
  if (!contexts[device]) {
    auto ctx = std::make_unique<DeviceContext>();
    LOOM_RETURN_IF_ERROR(CreateContext(device, ctx.get()));
    contexts[device] = std::move(ctx);
  }
  return contexts[device].get();
}

absl::StatusOr<DeviceContext*> ContextFor(const Tensor& t) {
  if (!t.is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a tensor on a CUDA device, got ", t.DebugString()));
  }
  return GetDeviceContext(t.device()->index());
}

absl::Status SetOpStream(int device, cudaStream_t stream) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, GetDeviceContext(device));
  std::lock_guard<std::mutex> lock(ContextMutex());
  ctx->stream = stream;
  LOOM_CUBLAS_CHECK(cublasSetStream(ctx->cublas, stream));
  return absl::OkStatus();
}

absl::StatusOr<void*> OpScratch(DeviceContext* ctx, size_t bytes) {
  if (bytes <= ctx->scratch_bytes) return ctx->scratch;
  // Grow geometrically so a few calls of increasing size do not each reallocate.
  size_t grown = std::max<size_t>({bytes, 2 * ctx->scratch_bytes, size_t{1} << 20});
  if (ctx->scratch != nullptr) {
    // Work already queued may still read the old buffer.
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    LOOM_CUDA_CHECK(cudaFree(ctx->scratch));
    ctx->scratch = nullptr;
    ctx->scratch_bytes = 0;
  }
  LOOM_CUDA_CHECK(cudaMalloc(&ctx->scratch, grown));
  ctx->scratch_bytes = grown;
  return ctx->scratch;
}

absl::Status CheckLaunch(const char* kernel_name) {
  cudaError_t rc = cudaGetLastError();
  if (rc != cudaSuccess) {
    return absl::InternalError(
        absl::StrCat("CUDA kernel ", kernel_name, " failed to launch: ", cudaGetErrorString(rc)));
  }
  return absl::OkStatus();
}

}  // namespace loom::ops::cuda
