// The test device: a device that behaves like a GPU to everything above ops/, built from the
// CPU, so the CPU suite runs the control path a GPU takes (docs/gpu_path.md).
//
// What it promises, as a GPU does:
// - Memory apart from the host's. Its addresses carry kTestDeviceAddressTag (runtime/device.h),
//   so a host thread that dereferences one faults at once (x86-64: a non-canonical address);
//   the host reaches the memory only through the device's copies. Fresh memory is filled with
//   0xff bytes (NaN as f32), so a read of memory nothing wrote shows up in the numbers.
// - Work runs asynchronously, in stream order, on worker threads: each stream is one thread with
//   a queue. Ops (ops/host_kernel.h) queue the CPU kernels on the device's op stream and return
//   at once; copies to the host, blocking copies from the host, and synchronisations wait for
//   the stream, which is where the host blocks (counted by Device::host_syncs()).
// - Events order streams: Record marks a point in a stream's queue, Stream::Wait makes another
//   stream's worker wait for it, Event::Synchronize makes the host wait. Nothing orders two
//   streams otherwise, so a missing event gives wrong numbers here as it would on a GPU.
// - Every host wait carries the job's deadline (GetHostWaitPolicy()) and polls the
//   communicators' check while it waits; a wait past its deadline returns DeadlineExceeded
//   naming the device and what was waited for.
// - A kernel that fails (a target outside the vocabulary, a collective past its deadline) sets
//   the device's sticky error, as a GPU's does: later work is skipped and every later host wait
//   returns the error.
// - Several devices per host, with per-process visibility as CUDA_VISIBLE_DEVICES gives:
//   LOOM_TEST_DEVICES (default 8) devices exist per host, LOOM_TEST_VISIBLE_DEVICES (a comma
//   list of their ids) selects and renumbers the ones this process sees. With
//   LOOM_TEST_DEVICE_LOCK_DIR set, each device is exclusive to one process (as a GPU in
//   EXCLUSIVE_PROCESS mode): a second process opening it gets FailedPrecondition.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/device.h"

namespace loom {

// Test devices this process sees (after LOOM_TEST_VISIBLE_DEVICES).
int TestDeviceCount();
// Visible test device `index` (0-based, as CudaDevice numbers visible GPUs).
absl::StatusOr<Device*> TestDevice(int index = 0);

// Work for a test device, run by a stream worker. A non-OK status becomes the device's sticky
// error.
using DeviceWork = std::function<absl::Status()>;

// Queues `work` on `device`'s op stream (a test device); runs it at once when the caller is
// itself a worker of that device (device code calling device code).
absl::Status EnqueueOnTestDevice(Device* device, DeviceWork work);

namespace test_device {

// A stream of a test device: one worker thread running queued work in order. Streams of the
// device are made by Stream::Create (runtime/stream.h); these calls serve stream.cc.
class StreamWorker;

StreamWorker* CreateStream(Device* device, const std::string& name);
void DestroyStream(StreamWorker* stream);
// The stream ops run on (the device's default stream until SetOpStream).
StreamWorker* OpStream(Device* device);
// Later ops, copies and memsets of `device` run on `stream` (nullptr: the default stream),
// after the work already queued on the previous op stream.
absl::Status SetOpStream(Device* device, StreamWorker* stream);
// Queues `work` on `stream`.
absl::Status Enqueue(StreamWorker* stream, DeviceWork work);

// A point in a stream's queue (an event's record).
struct Mark {
  StreamWorker* stream = nullptr;  // nullptr: never recorded (complete)
  uint64_t seq = 0;
  // An event's record only (Event::Record): the steady-clock time in ns at which the stream
  // reached the mark, -1 until then (Event::ElapsedMs reads it, as CUDA's timing events).
  std::shared_ptr<std::atomic<int64_t>> reached_ns;
};
Mark MarkNow(StreamWorker* stream);
bool Reached(const Mark& mark);
// Makes `stream` wait for `mark` before its later work.
absl::Status StreamWaitMark(StreamWorker* stream, const Mark& mark);
// The host waits for `mark` within the job's deadline (a counted host synchronisation).
absl::Status HostWait(Device* device, const Mark& mark, const std::string& what);

// The device's sticky error (OK while none).
absl::Status StickyError(Device* device);

}  // namespace test_device
}  // namespace loom
