// The stream every op of a device runs on. At start-up the trainer creates one
// (Stream::CreateForOps) and makes it the ops' stream; communicators order their streams
// against it with events (parallel/nccl_backend.h, parallel/test_comm_backend.h). On CUDA this
// is ops/cuda/context.h SetOpStream (a blocking stream, so tensor copies and memsets on the
// legacy default stream stay ordered with the ops); on the test device the worker the ops,
// copies and memsets are queued on; on the CPU there is nothing to choose.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/stream.h"

namespace loom::ops {

// Later ops of `stream.device()` run on `stream`, after the work queued on the previous op
// stream. `stream` must outlive its use as the op stream.
absl::Status UseOpStream(const Stream& stream);

// A created op stream for `device`, made the ops' stream for this object's life; afterwards the
// ops go back to the default stream (after this one's work) and the stream is destroyed.
class OpStreamScope {
 public:
  static absl::StatusOr<std::unique_ptr<OpStreamScope>> Create(Device* device);
  ~OpStreamScope();
  const Stream& stream() const { return *stream_; }

 private:
  explicit OpStreamScope(std::shared_ptr<Stream> s) : stream_(std::move(s)) {}
  std::shared_ptr<Stream> stream_;
};

}  // namespace loom::ops
