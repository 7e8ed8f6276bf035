// Streams and events. On CUDA they wrap cudaStream_t / cudaEvent_t so compute and
// communication can overlap, ordered by events; on the test device (runtime/test_device.h) they
// are worker threads and marks in their queues, with the same ordering rules; on the CPU they
// are no-ops (work is synchronous), so code written against them runs unchanged on all three.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/device.h"

namespace loom {

class Event;

class Stream {
 public:
  // The default (legacy) stream of a device; for the CPU, a no-op stream.
  static Stream Default(Device* device) { return Stream(device, nullptr); }
  // A new non-blocking stream on the device (a no-op stream on the CPU).
  static absl::StatusOr<std::shared_ptr<Stream>> Create(Device* device);
  // A new stream for the ops (ops/op_stream.h): on CUDA a blocking stream, so that tensor copies
  // and memsets on the legacy default stream stay ordered with it (runtime/device.h).
  static absl::StatusOr<std::shared_ptr<Stream>> CreateForOps(Device* device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& o) noexcept : device_(o.device_), handle_(o.handle_), owned_(o.owned_) {
    o.owned_ = false;
  }

  Device* device() const { return device_; }
  // cudaStream_t on CUDA (nullptr = the default stream); a test_device::StreamWorker on the test
  // device (nullptr = the device's op stream at the time of use); nullptr on the CPU.
  void* handle() const { return handle_; }
  absl::Status Synchronize();
  // Makes later work on this stream wait for `event`.
  absl::Status Wait(const Event& event);

 private:
  Stream(Device* device, void* handle, bool owned = false)
      : device_(device), handle_(handle), owned_(owned) {}
  Device* device_;
  void* handle_;
  bool owned_ = false;
};

class Event {
 public:
  static absl::StatusOr<std::unique_ptr<Event>> Create(Device* device);
  ~Event();
  // Marks the point in `stream`'s work that Wait()/Synchronize() refer to.
  absl::Status Record(const Stream& stream);
  // The host waits (within the job's deadline on the test device).
  absl::Status Synchronize();
  // Whether the work before the last Record has finished (true if never recorded).
  absl::StatusOr<bool> Query() const;
  // Milliseconds between two recorded events, once the stream has passed both (CUDA and the
  // test device: the times its stream reached them); 0 on the CPU.
  absl::StatusOr<float> ElapsedMs(const Event& start) const;
  void* handle() const { return handle_; }

 private:
  Event(Device* device, void* handle) : device_(device), handle_(handle) {}
  Device* device_;
  void* handle_;
};

}  // namespace loom
