#include "runtime/stream.h"

#ifdef LOOM_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "runtime/host_wait.h"
#include "runtime/status.h"
#include "runtime/test_device.h"

namespace loom {

namespace {

test_device::StreamWorker* Worker(const Stream& s) {
  auto* w = static_cast<test_device::StreamWorker*>(s.handle());
  return w != nullptr ? w : test_device::OpStream(s.device());
}

}  // namespace

absl::StatusOr<std::shared_ptr<Stream>> Stream::CreateForOps(Device* device) {
  void* handle = nullptr;
  if (device->is_test()) handle = test_device::CreateStream(device, "ops");
#ifdef LOOM_WITH_CUDA
  if (device->is_cuda()) {
    LOOM_RETURN_IF_ERROR(UseCudaDevice(device->index()));
    cudaStream_t s;
    LOOM_CUDA_CHECK(cudaStreamCreate(&s));
    handle = s;
  }
#endif
  return std::shared_ptr<Stream>(new Stream(device, handle, handle != nullptr));
}

absl::StatusOr<std::shared_ptr<Stream>> Stream::Create(Device* device) {
  void* handle = nullptr;
  if (device->is_test()) handle = test_device::CreateStream(device, "side");
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
  if (owned_ && handle_ && device_->is_test()) {
    test_device::DestroyStream(static_cast<test_device::StreamWorker*>(handle_));
    return;
  }
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
  if (device_->is_test()) {
    return test_device::HostWait(device_, test_device::MarkNow(Worker(*this)),
                                 "a stream synchronisation");
  }
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
  if (device_->is_test() && event.handle()) {
    return test_device::StreamWaitMark(Worker(*this),
                                       *static_cast<const test_device::Mark*>(event.handle()));
  }
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
  if (device->is_test()) handle = new test_device::Mark();
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
  if (device_->is_test()) {
    delete static_cast<test_device::Mark*>(handle_);
    return;
  }
#ifdef LOOM_WITH_CUDA
  if (handle_) cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
#endif
}

absl::Status Event::Record(const Stream& stream) {
  if (device_->is_test()) {
    // A timing event, as CUDA's: the stream stamps the time it reaches the record.
    test_device::StreamWorker* worker = Worker(stream);
    auto reached = std::make_shared<std::atomic<int64_t>>(-1);
    LOOM_RETURN_IF_ERROR(test_device::Enqueue(worker, [reached] {
      reached->store(absl::ToUnixNanos(absl::Now()));
      return absl::OkStatus();
    }));
    test_device::Mark mark = test_device::MarkNow(worker);
    mark.reached_ns = std::move(reached);
    *static_cast<test_device::Mark*>(handle_) = std::move(mark);
    return absl::OkStatus();
  }
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
  if (device_->is_test()) {
    return test_device::HostWait(device_, *static_cast<test_device::Mark*>(handle_), "an event");
  }
#ifdef LOOM_WITH_CUDA
  if (handle_) {
    auto event = static_cast<cudaEvent_t>(handle_);
    const std::string what = absl::StrCat("wait for an event of ", device_->Name());
    return WaitForDevice([&] { return Done(cudaEventQuery(event), what); }, what);
  }
#endif
  return absl::OkStatus();
}

absl::StatusOr<bool> Event::Query() const {
  if (device_->is_test()) {
    LOOM_RETURN_IF_ERROR(test_device::StickyError(device_));
    return test_device::Reached(*static_cast<const test_device::Mark*>(handle_));
  }
#ifdef LOOM_WITH_CUDA
  if (handle_) {
    const cudaError_t q = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
    if (q == cudaErrorNotReady) return false;
    LOOM_CUDA_CHECK(q);
  }
#endif
  return true;
}

absl::StatusOr<float> Event::ElapsedMs(const Event& start) const {
  if (device_->is_test()) {
    const auto* a = static_cast<const test_device::Mark*>(start.handle_);
    const auto* b = static_cast<const test_device::Mark*>(handle_);
    const int64_t t0 = a->reached_ns ? a->reached_ns->load() : -1;
    const int64_t t1 = b->reached_ns ? b->reached_ns->load() : -1;
    if (t0 < 0 || t1 < 0) {
      return absl::FailedPreconditionError(
          "Event::ElapsedMs: an event was not recorded or its stream has not reached it yet");
    }
    return static_cast<float>(static_cast<double>(t1 - t0) / 1e6);
  }
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
