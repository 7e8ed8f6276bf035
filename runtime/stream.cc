#include "runtime/stream.h"

#ifdef LOOM_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "absl/strings/str_cat.h"
#include "runtime/host_wait.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<std::shared_ptr<Stream>> Stream::Create(Device* device) {
  void* handle = nullptr;
#ifdef LOOM_WITH_CUDA
  if (device->is_cuda()) {
    LOOM_RETURN_IF_ERROR(UseCudaDevice(device->index()));
    cudaStream_t s;
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    handle = s;
  }
#endif
  return std::shared_ptr<Stream>(new Stream(device, handle, handle != nullptr));
}

Stream::~Stream() {
#ifdef LOOM_WITH_CUDA
  if (owned_ && handle_) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
#endif
}

#ifdef LOOM_WITH_CUDA
namespace {
// cudaStreamQuery / cudaEventQuery as WaitForDevice's poll: true when done, an error naming
// `what` when CUDA reports one.
absl::StatusOr<bool> Done(cudaError_t q, const std::string& what) {
  if (q == cudaSuccess) return true;
  if (q == cudaErrorNotReady) return false;
  cudaGetLastError();
  return absl::InternalError(absl::StrCat(what, ": CUDA reports ", cudaGetErrorString(q)));
}
}  // namespace
#endif

// Host waits poll against the job's deadline (runtime/host_wait.h) instead of blocking in
// cudaStreamSynchronize / cudaEventSynchronize, which no deadline can interrupt.
absl::Status Stream::Synchronize() {
#ifdef LOOM_WITH_CUDA
  if (device_->is_cuda()) {
    auto stream = static_cast<cudaStream_t>(handle_);
    const std::string what = absl::StrCat("synchronisation of a stream of ", device_->Name());
    return WaitForDevice([&] { return Done(cudaStreamQuery(stream), what); }, what);
  }
#endif
  return absl::OkStatus();
}

absl::Status Stream::Wait(const Event& event) {
#ifdef LOOM_WITH_CUDA
  if (device_->is_cuda() && event.handle()) {
    LOOM_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(handle_),
                                        static_cast<cudaEvent_t>(event.handle()), 0));
  }
#else
  (void)event;
#endif
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Event>> Event::Create(Device* device) {
  void* handle = nullptr;
#ifdef LOOM_WITH_CUDA
  if (device->is_cuda()) {
    LOOM_RETURN_IF_ERROR(UseCudaDevice(device->index()));
    cudaEvent_t e;
    LOOM_CUDA_CHECK(cudaEventCreate(&e));
    handle = e;
  }
#endif
  return std::unique_ptr<Event>(new Event(device, handle));
}

Event::~Event() {
#ifdef LOOM_WITH_CUDA
  if (handle_) cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
#endif
}

absl::Status Event::Record(const Stream& stream) {
#ifdef LOOM_WITH_CUDA
  if (handle_) {
    LOOM_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(handle_),
                                    static_cast<cudaStream_t>(stream.handle())));
  }
#else
  (void)stream;
#endif
  return absl::OkStatus();
}

absl::Status Event::Synchronize() {
#ifdef LOOM_WITH_CUDA
  if (handle_) {
    auto event = static_cast<cudaEvent_t>(handle_);
    const std::string what = absl::StrCat("wait for an event of ", device_->Name());
    return WaitForDevice([&] { return Done(cudaEventQuery(event), what); }, what);
  }
#endif
  return absl::OkStatus();
}

absl::StatusOr<float> Event::ElapsedMs(const Event& start) const {
  float ms = 0.0f;
#ifdef LOOM_WITH_CUDA
  if (handle_ && start.handle_) {
    LOOM_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.handle_),
                                         static_cast<cudaEvent_t>(handle_)));
  }
#else
  (void)start;
#endif
  return ms;
}

}  // namespace loom
