#include "parallel/test_comm_backend.h"

#include <mpi.h>

#include <deque>
#include <functional>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "runtime/host_wait.h"
#include "runtime/status.h"
#include "runtime/test_device.h"

namespace loom {
namespace {

// One collective in flight: where its completion lands in the communication stream, its
// deadline and what to say about it.
struct InFlight {
  std::string what;
  absl::Time deadline;
  absl::Duration timeout;
  int64_t step = -1;
  test_device::Mark done;
  std::mutex mu;
  absl::Status result;          // set by the stream worker when the MPI operation ends
  std::vector<Tensor> orphans;  // tensors of a CommWork that stopped waiting for it
};

absl::Status DeadlineError(const InFlight& op) {
  return absl::DeadlineExceededError(absl::StrCat(
      op.what, " did not complete within ", absl::FormatDuration(op.timeout),
      op.step >= 0 ? absl::StrCat(" at step ", op.step) : std::string(" (outside a step)"),
      ": a peer did not join (stalled, crashed or issued a different operation); "
      "runtime.collective_timeout_s sets this deadline"));
}

// True once complete; an error when it failed or is past its deadline.
absl::StatusOr<bool> Poll(InFlight& op, absl::Time now) {
  if (test_device::Reached(op.done)) {
    std::lock_guard<std::mutex> lock(op.mu);
    if (!op.result.ok()) return op.result;
    return true;
  }
  if (now > op.deadline) return DeadlineError(op);
  return false;
}

class Registry {
 public:
  void Add(std::shared_ptr<InFlight> op) {
    std::lock_guard<std::mutex> lock(mu_);
    ops_.push_back(std::move(op));
  }
  absl::Status Check() {
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    for (auto it = ops_.begin(); it != ops_.end();) {
      absl::StatusOr<bool> done = Poll(**it, now);
      if (!done.ok()) return done.status();
      it = *done ? ops_.erase(it) : std::next(it);
    }
    return absl::OkStatus();
  }
  std::string Oldest() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& op : ops_) {
      if (!test_device::Reached(op->done)) return op->what;
    }
    return "";
  }

 private:
  std::mutex mu_;
  std::deque<std::shared_ptr<InFlight>> ops_;
};

Registry& TheRegistry() {
  static auto* r = new Registry();  // never destroyed: outlives every work
  return *r;
}

// Device seconds per group name, not yet taken (TakeTestCommDeviceSeconds).
struct DeviceTimes {
  std::mutex mu;
  std::map<std::string, double> seconds;
};
DeviceTimes& Times() {
  static auto* times = new DeviceTimes();  // never destroyed: stream workers may still add
  return *times;
}

class TestWork : public CommWork {
 public:
  TestWork(std::shared_ptr<InFlight> op, std::vector<Tensor> keep, Device* device)
      : op_(std::move(op)), keep_(std::move(keep)), device_(device) {}
  ~TestWork() override {
    if (waited_) return;
    // Destroyed unwaited: the host blocks until the operation is over (as NcclWork does), so
    // the tensors are not released under it.
    waited_ = true;
    const absl::Status s = test_device::HostWait(device_, op_->done, op_->what);
    if (s.ok()) keep_.clear();
    Orphan();
  }
  absl::Status Wait() override {
    if (waited_) return status_;
    waited_ = true;
    status_ = TheRegistry().Check();
    if (status_.ok()) {
      status_ = test_device::StreamWaitMark(test_device::OpStream(device_), op_->done);
    }
    if (status_.ok()) {
      keep_.clear();
    } else {
      Orphan();
    }
    return status_;
  }
  absl::StatusOr<bool> Test() override {
    if (waited_) return true;
    absl::Status s = TheRegistry().Check();
    if (!s.ok()) {
      waited_ = true;
      status_ = s;
      Orphan();
      return s;
    }
    if (!test_device::Reached(op_->done)) return false;
    LOOM_RETURN_IF_ERROR(Wait());
    return true;
  }

 private:
  void Orphan() {
    std::lock_guard<std::mutex> lock(op_->mu);
    for (Tensor& t : keep_) op_->orphans.push_back(std::move(t));
    keep_.clear();
  }
  std::shared_ptr<InFlight> op_;
  std::vector<Tensor> keep_;
  Device* device_;
  bool waited_ = false;
  absl::Status status_;
};

// Runs an MPI backend operation on the communication stream's worker and waits for it there.
using MpiOp = std::function<absl::StatusOr<std::unique_ptr<CommWork>>(CommBackend*)>;

class TestCommBackend : public CommBackend {
 public:
  TestCommBackend(std::shared_ptr<CommState> state, Device* device, std::string name,
                  std::unique_ptr<CommBackend> host, std::unique_ptr<CommBackend> device_mpi,
                  std::shared_ptr<MpiCommHandle> dup)
      : state_(std::move(state)),
        device_(device),
        name_(std::move(name)),
        host_(std::move(host)),
        device_mpi_(std::move(device_mpi)),
        dup_(std::move(dup)),
        stream_(test_device::CreateStream(device, "comm")) {}
  ~TestCommBackend() override {
    // Runs what is queued, then ends the worker; the duplicate communicator is freed after.
    test_device::DestroyStream(stream_);
  }

  absl::StatusOr<std::unique_ptr<CommWork>> AllReduce(const Tensor& t, ReduceOp op,
                                                      const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(t, what));
    return Issue(what, {t},
                 [t, op, what](CommBackend* mpi) { return mpi->AllReduce(t, op, what); });
  }
  absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatter(const Tensor& in, const Tensor& out,
                                                          ReduceOp op,
                                                          const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(in, what));
    LOOM_RETURN_IF_ERROR(OnDevice(out, what));
    return Issue(what, {in, out}, [in, out, op, what](CommBackend* mpi) {
      return mpi->ReduceScatter(in, out, op, what);
    });
  }
  absl::StatusOr<std::unique_ptr<CommWork>> AllGatherV(const Tensor& in, const Tensor& out,
                                                       const std::vector<int64_t>& counts,
                                                       const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(in, what));
    LOOM_RETURN_IF_ERROR(OnDevice(out, what));
    return Issue(what, {in, out}, [in, out, counts, what](CommBackend* mpi) {
      return mpi->AllGatherV(in, out, counts, what);
    });
  }
  absl::StatusOr<std::unique_ptr<CommWork>> Broadcast(const Tensor& t, int root,
                                                      const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(t, what));
    return Issue(what, {t},
                 [t, root, what](CommBackend* mpi) { return mpi->Broadcast(t, root, what); });
  }
  absl::StatusOr<std::unique_ptr<CommWork>> BatchSendRecv(absl::Span<const P2POp> ops,
                                                          const std::string& what) override {
    std::vector<Tensor> keep;
    std::vector<P2POp> copy(ops.begin(), ops.end());
    for (const P2POp& op : ops) {
      LOOM_RETURN_IF_ERROR(OnDevice(op.tensor, what));
      keep.push_back(op.tensor);
    }
    return Issue(what, std::move(keep), [copy, what](CommBackend* mpi) {
      return mpi->BatchSendRecv(absl::MakeConstSpan(copy), what);
    });
  }
  absl::Status Barrier(const std::string& what) override { return host_->Barrier(what); }
  absl::Status AllReduceHost(absl::Span<double> data, ReduceOp op,
                             const std::string& what) override {
    return host_->AllReduceHost(data, op, what);
  }

 private:
  absl::Status OnDevice(const Tensor& t, const std::string& what) const {
    if (t.device() != device_) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", t.DebugString(),
                                                     " but this communicator's backend runs on ",
                                                     device_->Name()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<CommWork>> Issue(const std::string& what, std::vector<Tensor> keep,
                                                  MpiOp run) {
    auto op = std::make_shared<InFlight>();
    op->what = what;
    op->timeout = state_->timeout;
    op->step = state_->step.load();
    // The transfer sees everything the ops queued before it.
    LOOM_RETURN_IF_ERROR(
        test_device::StreamWaitMark(stream_, test_device::MarkNow(test_device::OpStream(device_))));
    CommBackend* mpi = device_mpi_.get();
    LOOM_RETURN_IF_ERROR(
        test_device::Enqueue(stream_, [op, mpi, name = name_, run = std::move(run)] {
          // Timed on the stream, as the NCCL backend's events time an operation on its stream.
          const absl::Time start = absl::Now();
          absl::StatusOr<std::unique_ptr<CommWork>> work = run(mpi);
          absl::Status s = work.ok() ? (*work)->Wait() : work.status();
          {
            std::lock_guard<std::mutex> lock(Times().mu);
            Times().seconds[name] += absl::ToDoubleSeconds(absl::Now() - start);
          }
          std::lock_guard<std::mutex> lock(op->mu);
          op->result = s;
          return s;
        }));
    op->done = test_device::MarkNow(stream_);
    op->deadline = absl::Now() + op->timeout;
    TheRegistry().Add(op);
    return std::unique_ptr<CommWork>(std::make_unique<TestWork>(op, std::move(keep), device_));
  }

  std::shared_ptr<CommState> state_;
  Device* device_;
  std::string name_;
  std::unique_ptr<CommBackend> host_;        // host scalars, on the group's MPI communicator
  std::unique_ptr<CommBackend> device_mpi_;  // device tensors, on the duplicate
  std::shared_ptr<MpiCommHandle> dup_;
  test_device::StreamWorker* stream_;
};

absl::Status PollForHostWaits() { return CheckTestCollectives(); }
std::string DescribeForHostWaits() { return OldestTestCollective(); }

}  // namespace

absl::Status CheckTestCollectives() { return TheRegistry().Check(); }
std::string OldestTestCollective() { return TheRegistry().Oldest(); }

std::map<std::string, double> TakeTestCommDeviceSeconds() {
  std::lock_guard<std::mutex> lock(Times().mu);
  return std::exchange(Times().seconds, {});
}

absl::StatusOr<std::unique_ptr<CommBackend>> MakeTestCommBackend(
    std::shared_ptr<MpiCommHandle> group, std::shared_ptr<CommState> state, Device* device,
    const std::string& name) {
  if (device == nullptr || !device->is_test()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the test device's collective backend needs a test device, got ",
                     device == nullptr ? std::string("none") : device->Name()));
  }
  auto dup = std::make_shared<MpiCommHandle>();
  dup->owned = true;
  {
    std::lock_guard<std::mutex> lock(MpiCallMutex());
    LOOM_MPI_CHECK(MPI_Comm_dup(group->comm, &dup->comm));
    MPI_Comm_set_errhandler(dup->comm, MPI_ERRORS_RETURN);
  }
  // Host waits on the device check this backend's collectives and name the oldest one.
  static std::once_flag hooked;
  std::call_once(hooked, [] {
    AddHostWaitCheck(&PollForHostWaits);
    AddHostWaitDescriber(&DescribeForHostWaits);
  });
  std::unique_ptr<CommBackend> host = MakeMpiBackend(group, state);
  std::unique_ptr<CommBackend> device_mpi = MakeMpiBackend(dup, state);
  return std::unique_ptr<CommBackend>(std::make_unique<TestCommBackend>(
      std::move(state), device, name, std::move(host), std::move(device_mpi), std::move(dup)));
}

}  // namespace loom
