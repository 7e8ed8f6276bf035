#include "ops/cuda/context.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "runtime/host_wait.h"
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

constexpr int kMaxDevices = 64;

// One context per device, created on first use and never destroyed: handles outliving static
// destruction are harmless, while destroying them after the CUDA runtime has shut down is not.
std::atomic<DeviceContext*>* Slots() {
  static auto* slots = new std::atomic<DeviceContext*>[kMaxDevices]();
  return slots;
}

}  // namespace

absl::StatusOr<DeviceContext*> GetDeviceContext(int device) {
  // Every op comes here, so the common case is one thread-local compare (UseCudaDevice) and one
  // atomic load: no cudaGetDeviceCount / cudaSetDevice per op.
  LOOM_RETURN_IF_ERROR(UseCudaDevice(device));  // also checks 0 <= device < count
  if (device >= kMaxDevices) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUDA device ", device, ": loom supports at most ", kMaxDevices, " per process"));
  }
  std::atomic<DeviceContext*>& slot = Slots()[device];
  if (DeviceContext* ctx = slot.load(std::memory_order_acquire)) return ctx;
  std::lock_guard<std::mutex> lock(ContextMutex());
  if (DeviceContext* ctx = slot.load(std::memory_order_acquire)) return ctx;
  auto ctx = std::make_unique<DeviceContext>();
  LOOM_RETURN_IF_ERROR(CreateContext(device, ctx.get()));
  slot.store(ctx.release(), std::memory_order_release);  // never destroyed (see Slots)
  return slot.load(std::memory_order_acquire);
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
  if (stream == ctx->stream) return absl::OkStatus();
  // Work already queued on the old stream (and the scratch and workspace it uses) must finish
  // before the new stream may reuse that memory: the allocator's reuse rule is one op stream.
  // Polled against the job's deadline (runtime/host_wait.h), not cudaStreamSynchronize.
  const cudaStream_t old_stream = ctx->stream;
  LOOM_RETURN_IF_ERROR(WaitForDevice(
      [&]() -> absl::StatusOr<bool> {
        const cudaError_t q = cudaStreamQuery(old_stream);
        if (q == cudaSuccess) return true;
        if (q == cudaErrorNotReady) return false;
        cudaGetLastError();
        return absl::InternalError(absl::StrCat("SetOpStream: ", cudaGetErrorString(q)));
      },
      absl::StrCat("the op stream of cuda:", device, " before switching streams")));
  ctx->stream = stream;
  LOOM_CUBLAS_CHECK(cublasSetStream(ctx->cublas, stream));
  return absl::OkStatus();
}

absl::StatusOr<void*> OpScratch(DeviceContext* ctx, size_t bytes) {
  if (bytes <= ctx->scratch_bytes) return ctx->scratch;
  // Grow geometrically so a few calls of increasing size do not each reallocate.
  size_t grown = std::max<size_t>({bytes, 2 * ctx->scratch_bytes, size_t{1} << 20});
  // The scratch comes from the device's caching allocator and goes back to it: work already
  // queued on the op stream may still read the old block, and the allocator hands it out again
  // only to work ordered after that (its reuse rule, runtime/device.h). So growing neither
  // synchronises nor frees: a cudaDeviceSynchronize or cudaFree here would also wait for the
  // communication streams (and hang on a stuck collective).
  LOOM_ASSIGN_OR_RETURN(Device * dev, CudaDevice(ctx->device));
  LOOM_ASSIGN_OR_RETURN(void* fresh, dev->allocator().Allocate(grown));
  if (ctx->scratch != nullptr) dev->allocator().Free(ctx->scratch);
  ctx->scratch = fresh;
  ctx->scratch_bytes = grown;
  return ctx->scratch;
}

absl::Status AllowDynamicSmem(int device, const void* kernel, size_t bytes) {
  static auto* mu = new std::mutex();
  static auto* done = new std::set<std::tuple<int, const void*, size_t>>();
  const auto key = std::make_tuple(device, kernel, bytes);
  {
    std::lock_guard<std::mutex> lock(*mu);
    if (done->count(key) != 0) return absl::OkStatus();
  }
  LOOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)));
  std::lock_guard<std::mutex> lock(*mu);
  done->insert(key);
  return absl::OkStatus();
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
