#include "runtime/test_device.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "runtime/host_wait.h"
#include "runtime/status.h"

namespace loom {
namespace test_device {

namespace {

void* Real(const void* p) {
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~kTestDeviceAddressTag);
}

}  // namespace

class StreamWorker {
 public:
  StreamWorker(Device* device, std::string name, std::function<void(const absl::Status&)> fail,
               std::function<bool()> failed)
      : device_(device),
        name_(std::move(name)),
        fail_(std::move(fail)),
        failed_(std::move(failed)) {
    thread_ = std::thread([this] { Run(); });
  }
  // Runs what is queued, then ends the thread. The object itself stays (never deleted): marks of
  // this stream held elsewhere (events, other streams' waits) still read its counters.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_all();
    if (on_this_thread()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
  Device* device() const { return device_; }
  const std::string& name() const { return name_; }
  bool on_this_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

  uint64_t Enqueue(DeviceWork work) {
    uint64_t seq;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return enqueued_;  // a destroyed stream takes no work (as CUDA refuses it)
      seq = ++enqueued_;
      queue_.emplace_back(std::move(work));
    }
    cv_.notify_all();
    return seq;
  }
  uint64_t enqueued() const {
    std::lock_guard<std::mutex> lock(mu_);
    return enqueued_;
  }
  bool Done(uint64_t seq) const {
    std::lock_guard<std::mutex> lock(mu_);
    return completed_ >= seq;
  }
  // Waits until work `seq` has run or `until` passes; true when it has run.
  bool WaitUntil(uint64_t seq, absl::Time until) {
    std::unique_lock<std::mutex> lock(mu_);
    while (completed_ < seq) {
      const absl::Duration left = until - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      done_cv_.wait_for(lock, absl::ToChronoMicroseconds(std::min(left, absl::Milliseconds(20))));
    }
    return true;
  }

 private:
  void Run() {
    tls_acting_as_device = true;
    for (;;) {
      DeviceWork work;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and drained
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      // After a failure the device's memory is undefined, as a GPU's is after a fault: later
      // work is skipped (its completion still counted, so waits end and report the error).
      if (!failed_()) {
        absl::Status s = work();
        if (!s.ok()) fail_(s);
      }
      work = nullptr;  // releases what the work held before completion is seen
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++completed_;
      }
      done_cv_.notify_all();
    }
  }

  Device* device_;
  std::string name_;
  std::function<void(const absl::Status&)> fail_;
  std::function<bool()> failed_;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<DeviceWork> queue_;
  uint64_t enqueued_ = 0, completed_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

namespace {

class TestDeviceImpl final : public Device {
 public:
  TestDeviceImpl(int index, int physical, size_t memory_bytes)
      : index_(index), physical_(physical), memory_bytes_(memory_bytes) {
    default_stream_ = MakeStream("default");
    op_stream_ = default_stream_;
  }
  DeviceKind kind() const override { return DeviceKind::kTest; }
  int index() const override { return index_; }
  std::string Name() const override {
    return absl::StrCat("test:", index_, " (test device ", physical_, ")");
  }

  // Called under the caching allocator's lock: takes only the device's own.
  absl::StatusOr<void*> RawAllocate(size_t bytes) override {
    std::lock_guard<std::mutex> lock(raw_mu_);
    if (raw_bytes_ + bytes > memory_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat(Name(), " holds ", memory_bytes_, " bytes (LOOM_TEST_DEVICE_MEMORY_MB)"));
    }
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (p == nullptr) return absl::ResourceExhaustedError(absl::StrCat("malloc of ", bytes));
    std::memset(p, 0xff, bytes);  // NaN as f32: reads of memory nothing wrote show
    raw_[p] = bytes;
    raw_bytes_ += bytes;
    return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) | kTestDeviceAddressTag);
  }
  void RawFree(void* ptr) override {
    void* real = Real(ptr);
    {
      std::lock_guard<std::mutex> lock(raw_mu_);
      auto it = raw_.find(real);
      if (it == raw_.end()) return;
      raw_bytes_ -= it->second;
      raw_.erase(it);
    }
    // Freed after the work queued so far, which may still use the block.
    (void)Enqueue([real] {
      std::free(real);
      return absl::OkStatus();
    });
  }

  absl::Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (OnWorker()) {
      std::memcpy(dst, Real(src), bytes);
      return absl::OkStatus();
    }
    // As cudaMemcpy: queued behind the ops, and the host waits for it.
    CountBytesToHost(bytes);
    return BlockingCopy(dst, src, bytes, /*to_host=*/true);
  }
  absl::Status CopyFromHost(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (OnWorker()) {
      std::memcpy(Real(dst), src, bytes);
      return absl::OkStatus();
    }
    // From pageable memory, as cudaMemcpy: the host waits until the copy has run.
    CountBytesFromHost(bytes);
    return BlockingCopy(dst, src, bytes, /*to_host=*/false);
  }
  absl::Status CopyFromHostAsync(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (OnWorker()) return CopyFromHost(dst, src, bytes);
    CountBytesFromHost(bytes);
    return Enqueue([dst, src, bytes] {
      std::memcpy(Real(dst), src, bytes);
      return absl::OkStatus();
    });
  }
  // As cudaMemcpyAsync into page-locked memory: queued behind the ops; the host does not wait
  // (WaitForCopies does, once for all of them).
  absl::Status CopyToHostAsync(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (OnWorker()) return CopyToHost(dst, src, bytes);
    CountBytesToHost(bytes);
    return Enqueue([dst, src, bytes] {
      std::memcpy(dst, Real(src), bytes);
      return absl::OkStatus();
    });
  }
  absl::Status WaitForCopies(const std::string& what) override {
    if (OnWorker()) return absl::OkStatus();
    return HostWaitStream(op_stream(), what);
  }
  absl::Status CopyWithin(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    return Enqueue([dst, src, bytes] {
      std::memmove(Real(dst), Real(src), bytes);
      return absl::OkStatus();
    });
  }
  absl::Status Memset(void* dst, int value, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    return Enqueue([dst, value, bytes] {
      std::memset(Real(dst), value, bytes);
      return absl::OkStatus();
    });
  }
  absl::Status Synchronize() override {
    if (OnWorker()) return absl::OkStatus();
    std::vector<StreamWorker*> streams;
    {
      std::lock_guard<std::mutex> lock(mu_);
      streams = streams_;
    }
    for (StreamWorker* s : streams) {
      LOOM_RETURN_IF_ERROR(HostWaitStream(s, "a device synchronisation"));
    }
    return StickyError();
  }
  MemoryInfo GetMemoryInfo() const override {
    MemoryInfo info;
    info.total_bytes = memory_bytes_;
    std::lock_guard<std::mutex> lock(raw_mu_);
    info.free_bytes = memory_bytes_ - raw_bytes_;
    return info;
  }

  // A copy between the host and the device that the host waits for. When the wait ends in an
  // error (its deadline, another failure) the host buffer may be gone before the queued copy
  // runs: the copy is then cancelled, not done.
  absl::Status BlockingCopy(void* dst, const void* src, size_t bytes, bool to_host) {
    struct Cancel {
      std::mutex mu;
      bool cancelled = false;
    };
    auto cancel = std::make_shared<Cancel>();
    LOOM_RETURN_IF_ERROR(Enqueue([dst, src, bytes, to_host, cancel] {
      std::lock_guard<std::mutex> lock(cancel->mu);
      if (cancel->cancelled) return absl::OkStatus();
      std::memcpy(to_host ? dst : Real(dst), to_host ? Real(src) : src, bytes);
      return absl::OkStatus();
    }));
    absl::Status s = HostWaitStream(
        op_stream(),
        absl::StrCat("a copy of ", bytes, " bytes ", to_host ? "to" : "from", " the host"));
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(cancel->mu);
      cancel->cancelled = true;
    }
    return s;
  }

  // ---- streams ----
  StreamWorker* MakeStream(const std::string& name) {
    auto* s = new StreamWorker(
        this, absl::StrCat(Name(), " stream ", name), [this](const absl::Status& s) { Fail(s); },
        [this] { return failed_.load(); });
    std::lock_guard<std::mutex> lock(mu_);
    streams_.push_back(s);
    return s;
  }
  void DropStream(StreamWorker* s) {
    bool was_op_stream = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::erase(streams_, s);
      was_op_stream = op_stream_ == s;
    }
    // Later ops go back to the default stream, after this one's work.
    if (was_op_stream) (void)SetOpStream(default_stream_);
    s->Stop();  // runs what is queued, then joins
  }
  StreamWorker* op_stream() {
    std::lock_guard<std::mutex> lock(mu_);
    return op_stream_;
  }
  absl::Status SetOpStream(StreamWorker* s) {
    if (s == nullptr) s = default_stream_;
    StreamWorker* old = op_stream();
    if (old == s) return absl::OkStatus();
    LOOM_RETURN_IF_ERROR(StreamWaitMark(s, MarkNow(old)));
    std::lock_guard<std::mutex> lock(mu_);
    op_stream_ = s;
    return absl::OkStatus();
  }
  absl::Status Enqueue(DeviceWork work) {
    if (OnWorker()) return work();
    op_stream()->Enqueue(std::move(work));
    return absl::OkStatus();
  }
  bool OnWorker() const { return tls_acting_as_device; }

  absl::Status HostWaitStream(StreamWorker* s, const std::string& what) {
    return HostWait(this, Mark{s, s->enqueued()}, what);
  }
  void Fail(const absl::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (sticky_.ok()) sticky_ = s;
    failed_ = true;
  }
  absl::Status StickyError() {
    std::lock_guard<std::mutex> lock(mu_);
    return sticky_;
  }
  void CountSync() { CountHostSync(); }

 private:
  int index_, physical_;
  size_t memory_bytes_;
  std::mutex mu_;
  std::vector<StreamWorker*> streams_;
  StreamWorker* default_stream_ = nullptr;
  StreamWorker* op_stream_ = nullptr;
  absl::Status sticky_;
  std::atomic<bool> failed_{false};
  mutable std::mutex raw_mu_;
  std::map<void*, size_t> raw_;
  size_t raw_bytes_ = 0;
};

TestDeviceImpl* Impl(Device* d) { return static_cast<TestDeviceImpl*>(d); }

struct Visibility {
  std::vector<int> physical;  // visible index -> physical id
  std::string error;
  size_t memory_bytes = size_t{16} << 30;
};

const Visibility& GetVisibility() {
  static const Visibility* v = [] {
    auto* out = new Visibility();
    int count = 8;
    if (const char* n = std::getenv("LOOM_TEST_DEVICES"); n != nullptr && *n != '\0') {
      if (!absl::SimpleAtoi(n, &count) || count < 0) {
        out->error = absl::StrCat("LOOM_TEST_DEVICES must be a count >= 0, got \"", n, "\"");
        return out;
      }
    }
    if (const char* mb = std::getenv("LOOM_TEST_DEVICE_MEMORY_MB"); mb != nullptr && *mb) {
      int64_t m = 0;
      if (!absl::SimpleAtoi(mb, &m) || m <= 0) {
        out->error = absl::StrCat("LOOM_TEST_DEVICE_MEMORY_MB must be > 0, got \"", mb, "\"");
        return out;
      }
      out->memory_bytes = static_cast<size_t>(m) << 20;
    }
    const char* vis = std::getenv("LOOM_TEST_VISIBLE_DEVICES");
    if (vis == nullptr) {
      for (int i = 0; i < count; ++i) out->physical.push_back(i);
      return out;
    }
    // As CUDA_VISIBLE_DEVICES: the list up to the first invalid entry.
    for (absl::string_view part : absl::StrSplit(vis, ',', absl::SkipWhitespace())) {
      int id = -1;
      if (!absl::SimpleAtoi(part, &id) || id < 0 || id >= count) break;
      out->physical.push_back(id);
    }
    return out;
  }();
  return *v;
}

// EXCLUSIVE_PROCESS: an flock on <dir>/test-device-<id>.lock, held for the process's life.
absl::Status ClaimExclusive(int physical) {
  const char* dir = std::getenv("LOOM_TEST_DEVICE_LOCK_DIR");
  if (dir == nullptr || *dir == '\0') return absl::OkStatus();
  const std::string path = absl::StrCat(dir, "/test-device-", physical, ".lock");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path, " (LOOM_TEST_DEVICE_LOCK_DIR): ", std::strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("test device ", physical,
                     " is in use by another process (exclusive-process mode, as a GPU in "
                     "EXCLUSIVE_PROCESS: each rank must pick its own device)"));
  }
  return absl::OkStatus();  // fd stays open: the lock lives as long as the process
}

}  // namespace

StreamWorker* CreateStream(Device* device, const std::string& name) {
  return Impl(device)->MakeStream(name);
}
void DestroyStream(StreamWorker* stream) {
  if (stream != nullptr) Impl(stream->device())->DropStream(stream);
}
StreamWorker* OpStream(Device* device) { return Impl(device)->op_stream(); }
absl::Status SetOpStream(Device* device, StreamWorker* stream) {
  return Impl(device)->SetOpStream(stream);
}
absl::Status Enqueue(StreamWorker* stream, DeviceWork work) {
  if (stream->on_this_thread()) return work();
  stream->Enqueue(std::move(work));
  return absl::OkStatus();
}

Mark MarkNow(StreamWorker* stream) { return Mark{stream, stream ? stream->enqueued() : 0}; }
bool Reached(const Mark& mark) { return mark.stream == nullptr || mark.stream->Done(mark.seq); }

absl::Status StreamWaitMark(StreamWorker* stream, const Mark& mark) {
  if (Reached(mark) || mark.stream == stream) return absl::OkStatus();
  stream->Enqueue([mark] {
    // The producing stream always finishes its work (collectives carry deadlines and fail
    // rather than hang), so this wait ends.
    while (!mark.stream->WaitUntil(mark.seq, absl::Now() + absl::Seconds(1))) {
      if (!Impl(mark.stream->device())->StickyError().ok()) break;
    }
    return absl::OkStatus();
  });
  return absl::OkStatus();
}

absl::Status HostWait(Device* device, const Mark& mark, const std::string& what) {
  TestDeviceImpl* dev = Impl(device);
  if (dev->OnWorker()) return absl::OkStatus();  // device code: already in stream order
  dev->CountSync();
  // The job's deadline, the communicators' checks (which name the collective the device is
  // stuck behind) and the roll-call answers all come from WaitForDevice, as on CUDA.
  LOOM_RETURN_IF_ERROR(WaitForDevice(
      [&]() -> absl::StatusOr<bool> {
        LOOM_RETURN_IF_ERROR(dev->StickyError());
        return mark.stream == nullptr ||
               mark.stream->WaitUntil(mark.seq, absl::Now() + absl::Milliseconds(5));
      },
      absl::StrCat(what, " on ", device->Name())));
  return dev->StickyError();
}

absl::Status StickyError(Device* device) { return Impl(device)->StickyError(); }

}  // namespace test_device

int TestDeviceCount() { return static_cast<int>(test_device::GetVisibility().physical.size()); }

absl::StatusOr<Device*> TestDevice(int index) {
  const test_device::Visibility& v = test_device::GetVisibility();
  if (!v.error.empty()) return absl::InvalidArgumentError(v.error);
  const int n = static_cast<int>(v.physical.size());
  if (index < 0 || index >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("test device ", index, " requested but ", n,
                     " are visible (LOOM_TEST_DEVICES, LOOM_TEST_VISIBLE_DEVICES)"));
  }
  static std::mutex mu;
  static auto* devices = new std::vector<test_device::TestDeviceImpl*>();
  std::lock_guard<std::mutex> lock(mu);
  if (devices->empty()) devices->resize(n, nullptr);
  if ((*devices)[index] == nullptr) {
    LOOM_RETURN_IF_ERROR(test_device::ClaimExclusive(v.physical[index]));
    (*devices)[index] = new test_device::TestDeviceImpl(index, v.physical[index], v.memory_bytes);
  }
  return (*devices)[index];
}

absl::Status EnqueueOnTestDevice(Device* device, DeviceWork work) {
  if (device == nullptr || !device->is_test()) {
    return absl::InvalidArgumentError("EnqueueOnTestDevice: not a test device");
  }
  return test_device::Impl(device)->Enqueue(std::move(work));
}

}  // namespace loom
