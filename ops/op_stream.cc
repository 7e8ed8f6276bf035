#include "ops/op_stream.h"

#include "runtime/status.h"
#include "runtime/test_device.h"

#ifdef LOOM_WITH_CUDA
#include <cuda_runtime.h>

#include "ops/cuda/context.h"
#endif

namespace loom::ops {

absl::Status UseOpStream(const Stream& stream) {
  Device* d = stream.device();
  if (d->is_test()) {
    return test_device::SetOpStream(d, static_cast<test_device::StreamWorker*>(stream.handle()));
  }
#ifdef LOOM_WITH_CUDA
  if (d->is_cuda()) {
    return cuda::SetOpStream(d->index(), static_cast<cudaStream_t>(stream.handle()));
  }
#endif
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OpStreamScope>> OpStreamScope::Create(Device* device) {
  LOOM_ASSIGN_OR_RETURN(std::shared_ptr<Stream> s, Stream::CreateForOps(device));
  LOOM_RETURN_IF_ERROR(UseOpStream(*s));
  return std::unique_ptr<OpStreamScope>(new OpStreamScope(std::move(s)));
}

OpStreamScope::~OpStreamScope() {
  // The test device's stream puts the ops back itself when it is destroyed.
  if (!stream_->device()->is_test()) (void)UseOpStream(Stream::Default(stream_->device()));
}

}  // namespace loom::ops
