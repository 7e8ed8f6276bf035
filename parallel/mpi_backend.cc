#include "parallel/mpi_backend.h"

#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "runtime/status.h"

namespace loom {

namespace {

// Every MPI call this backend makes holds this lock: World initialises MPI at
// MPI_THREAD_SERIALIZED, which allows calls from any thread but never two at once, so a progress
// thread (Progress()) and the thread posting and testing operations take turns.
std::mutex& MpiMutex() { return MpiCallMutex(); }
using MpiLock = std::lock_guard<std::mutex>;

}  // namespace

std::mutex& MpiCallMutex() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}

MpiCommHandle::~MpiCommHandle() {
  if (!owned || comm == MPI_COMM_NULL) return;
  MpiLock lock(MpiMutex());
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm);
}

namespace {

// Element-wise operations are split into requests of at most this many elements, so counts
// never overflow MPI's int.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

absl::StatusOr<MPI_Datatype> MpiType(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kBF16:
    case DType::kF16:
    case DType::kU16:
      return MPI_UINT16_T;
  }
  return absl::InvalidArgumentError("unknown dtype");
}

absl::StatusOr<MPI_Op> MpiOp(ReduceOp op, DType t, const std::string& what) {
  if (t != DType::kF32 && t != DType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the MPI backend reduces f32 and i32 only (CPU tensors are f32), not ",
        std::string(DTypeName(t))));
  }
  return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM;
}

bool Overlaps(const Tensor& a, const Tensor& b) {
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// Scales a reduced f32 / i32 tensor by 1/n for ReduceOp::kAvg.
void DivideBy(const Tensor& t, int n) {
  if (t.dtype() == DType::kF32) {
    float* p = t.data_as<float>();
    const float s = 1.0f / static_cast<float>(n);
    for (int64_t i = 0; i < t.numel(); ++i) p[i] *= s;
  } else {
    int32_t* p = t.data_as<int32_t>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] /= n;
  }
}

// Polls `reqs` until all complete or the deadline passes. Spins for a short while (latency of
// small messages), then yields the core on every poll and finally sleeps briefly, so a waiting
// rank does not take the CPU from the peer it waits for when ranks outnumber cores.
absl::Status WaitRequests(std::vector<MPI_Request>& reqs, const CommState& state,
                          const std::string& what) {
  if (reqs.empty()) return absl::OkStatus();
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + state.timeout;
  for (int64_t polls = 0;; ++polls) {
    int done = 0;
    {
      MpiLock lock(MpiMutex());
      LOOM_MPI_CHECK(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done,
                                 MPI_STATUSES_IGNORE));
    }
    if (done) return absl::OkStatus();
    if (polls < 256) continue;
    if ((polls & 63) == 0) {
      const absl::Time now = absl::Now();
      if (now > deadline) {
        const int64_t step = state.step.load();
        return absl::DeadlineExceededError(absl::StrCat(
            what, " did not complete within ", absl::FormatDuration(state.timeout),
            step >= 0 ? absl::StrCat(" at step ", step) : std::string(" (outside a step)"),
            ": a peer did not join (stalled, crashed or issued a different operation); "
            "runtime.collective_timeout_s sets this deadline"));
      }
      // Not from a device's stream worker: the roll call is answered by the host thread, which
      // waits on the device meanwhile (runtime/test_device.h HostWait).
      if (now - start > absl::Milliseconds(100) && state.on_long_wait && !tls_acting_as_device) {
        state.on_long_wait(what);
      }
      if (now - start > absl::Milliseconds(5)) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        continue;
      }
    }
    sched_yield();
  }
}

class MpiWork : public CommWork {
 public:
  MpiWork(std::shared_ptr<CommState> state, std::string what)
      : state_(std::move(state)), what_(std::move(what)) {}
  ~MpiWork() override {
    if (!waited_) (void)Wait();
  }
  absl::Status Wait() override {
    if (waited_) return status_;
    waited_ = true;
    status_ = WaitRequests(reqs_, *state_, what_);
    if (status_.ok() && finish_) finish_();
    keep_.clear();
    return status_;
  }
  absl::StatusOr<bool> Test() override {
    if (waited_) return true;
    int done = 0;
    {
      MpiLock lock(MpiMutex());
      LOOM_MPI_CHECK(MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &done,
                                 MPI_STATUSES_IGNORE));
    }
    if (!done) return false;
    LOOM_RETURN_IF_ERROR(Wait());
    return true;
  }
  std::vector<MPI_Request> reqs_;
  std::vector<Tensor> keep_;       // storage kept alive until complete
  std::function<void()> finish_;   // runs once on completion (copy out, divide for kAvg)

 private:
  std::shared_ptr<CommState> state_;
  std::string what_;
  bool waited_ = false;
  absl::Status status_;
};

char* Bytes(const Tensor& t, int64_t elem) {
  return static_cast<char*>(t.data()) + elem * static_cast<int64_t>(DTypeSize(t.dtype()));
}

absl::Status CheckIntCount(int64_t n, const std::string& what) {
  if (n > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", n, " elements per rank exceed MPI's int count; use smaller buckets"));
  }
  return absl::OkStatus();
}

class MpiBackend : public CommBackend {
 public:
  MpiBackend(std::shared_ptr<MpiCommHandle> handle, std::shared_ptr<CommState> state)
      : handle_(std::move(handle)), state_(std::move(state)) {
    MpiLock lock(MpiMutex());
    MPI_Comm_rank(handle_->comm, &rank_);
    MPI_Comm_size(handle_->comm, &size_);
  }

  absl::StatusOr<std::unique_ptr<CommWork>> AllReduce(const Tensor& t, ReduceOp op,
                                                      const std::string& what) override {
    LOOM_ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(t.dtype()));
    LOOM_ASSIGN_OR_RETURN(MPI_Op mop, MpiOp(op, t.dtype(), what));
    auto work = std::make_unique<MpiWork>(state_, what);
    MpiLock lock(MpiMutex());
    for (int64_t at = 0; at < t.numel(); at += kMaxChunk) {
      const int n = static_cast<int>(std::min(kMaxChunk, t.numel() - at));
      work->reqs_.emplace_back();
      LOOM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, Bytes(t, at), n, type, mop, handle_->comm,
                                    &work->reqs_.back()));
    }
    work->keep_.push_back(t);
    if (op == ReduceOp::kAvg) work->finish_ = [t, n = size_] { DivideBy(t, n); };
    return std::unique_ptr<CommWork>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatter(const Tensor& in, const Tensor& out,
                                                          ReduceOp op,
                                                          const std::string& what) override {
    LOOM_ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(in.dtype()));
    LOOM_ASSIGN_OR_RETURN(MPI_Op mop, MpiOp(op, in.dtype(), what));
    LOOM_RETURN_IF_ERROR(CheckIntCount(out.numel(), what));
    auto work = std::make_unique<MpiWork>(state_, what);
    // MPI forbids aliased buffers; an output inside the input (the distributed optimizer's
    // shard of the gradient buffer) is reduced into a temporary and copied back on completion.
    Tensor dst = out;
    if (Overlaps(in, out)) {
      LOOM_ASSIGN_OR_RETURN(dst, Tensor::Empty(out.shape(), out.dtype(), out.device()));
    }
    MpiLock lock(MpiMutex());
    work->reqs_.emplace_back();
    LOOM_MPI_CHECK(MPI_Ireduce_scatter_block(in.data(), dst.data(), static_cast<int>(out.numel()),
                                             type, mop, handle_->comm, &work->reqs_.back()));
    work->keep_ = {in, out, dst};
    const bool avg = op == ReduceOp::kAvg;
    if (avg || dst.data() != out.data()) {
      work->finish_ = [dst, out, avg, n = size_] {
        if (avg) DivideBy(dst, n);
        if (dst.data() != out.data()) std::memcpy(out.data(), dst.data(), out.nbytes());
      };
    }
    return std::unique_ptr<CommWork>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<CommWork>> AllGatherV(const Tensor& in, const Tensor& out,
                                                       const std::vector<int64_t>& counts,
                                                       const std::string& what) override {
    LOOM_ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(in.dtype()));
    std::vector<int> icounts(size_), displs(size_);
    int64_t at = 0;
    bool equal = true;
    for (int r = 0; r < size_; ++r) {
      LOOM_RETURN_IF_ERROR(CheckIntCount(counts[r], what));
      LOOM_RETURN_IF_ERROR(CheckIntCount(at, what));
      icounts[r] = static_cast<int>(counts[r]);
      displs[r] = static_cast<int>(at);
      at += counts[r];
      equal &= counts[r] == counts[0];
    }
    auto work = std::make_unique<MpiWork>(state_, what);
    // `in` already in its place inside `out` (the distributed optimizer's updated shard) is
    // MPI_IN_PLACE; any other overlap goes through a copy of `in`.
    const void* send = in.data();
    if (in.data() == Bytes(out, displs[rank_])) {
      send = MPI_IN_PLACE;
    } else if (Overlaps(in, out)) {
      LOOM_ASSIGN_OR_RETURN(Tensor copy, in.To(in.device()));
      work->keep_.push_back(copy);
      send = copy.data();
    }
    MpiLock lock(MpiMutex());
    work->reqs_.emplace_back();
    if (equal) {
      LOOM_MPI_CHECK(MPI_Iallgather(send, icounts[rank_], type, out.data(), icounts[0], type,
                                    handle_->comm, &work->reqs_.back()));
    } else {
      LOOM_MPI_CHECK(MPI_Iallgatherv(send, icounts[rank_], type, out.data(), icounts.data(),
                                     displs.data(), type, handle_->comm, &work->reqs_.back()));
      // MPI reads the count/displacement arrays until completion.
      work->finish_ = [icounts = std::move(icounts), displs = std::move(displs)] {};
    }
    work->keep_.push_back(in);
    work->keep_.push_back(out);
    return std::unique_ptr<CommWork>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<CommWork>> Broadcast(const Tensor& t, int root,
                                                      const std::string& what) override {
    LOOM_ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(t.dtype()));
    auto work = std::make_unique<MpiWork>(state_, what);
    MpiLock lock(MpiMutex());
    for (int64_t at = 0; at < t.numel(); at += kMaxChunk) {
      const int n = static_cast<int>(std::min(kMaxChunk, t.numel() - at));
      work->reqs_.emplace_back();
      LOOM_MPI_CHECK(MPI_Ibcast(Bytes(t, at), n, type, root, handle_->comm, &work->reqs_.back()));
    }
    work->keep_.push_back(t);
    return std::unique_ptr<CommWork>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<CommWork>> BatchSendRecv(absl::Span<const P2POp> ops,
                                                          const std::string& what) override {
    auto work = std::make_unique<MpiWork>(state_, what);
    MpiLock lock(MpiMutex());
    for (const P2POp& op : ops) {
      LOOM_ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(op.tensor.dtype()));
      for (int64_t at = 0; at < op.tensor.numel(); at += kMaxChunk) {
        const int n = static_cast<int>(std::min(kMaxChunk, op.tensor.numel() - at));
        work->reqs_.emplace_back();
        if (op.kind == P2POp::kSend) {
          LOOM_MPI_CHECK(MPI_Isend(Bytes(op.tensor, at), n, type, op.peer, kP2PTag, handle_->comm,
                                   &work->reqs_.back()));
        } else {
          LOOM_MPI_CHECK(MPI_Irecv(Bytes(op.tensor, at), n, type, op.peer, kP2PTag, handle_->comm,
                                   &work->reqs_.back()));
        }
      }
      work->keep_.push_back(op.tensor);
    }
    return std::unique_ptr<CommWork>(std::move(work));
  }

  absl::Status Barrier(const std::string& what) override {
    std::vector<MPI_Request> reqs(1);
    {
      MpiLock lock(MpiMutex());
      LOOM_MPI_CHECK(MPI_Ibarrier(handle_->comm, &reqs[0]));
    }
    return WaitRequests(reqs, *state_, what);
  }

  absl::Status AllReduceHost(absl::Span<double> data, ReduceOp op,
                             const std::string& what) override {
    std::vector<MPI_Request> reqs(1);
    {
      MpiLock lock(MpiMutex());
      LOOM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()),
                                    MPI_DOUBLE, op == ReduceOp::kMax ? MPI_MAX : MPI_SUM,
                                    handle_->comm, &reqs[0]));
    }
    LOOM_RETURN_IF_ERROR(WaitRequests(reqs, *state_, what));
    if (op == ReduceOp::kAvg) {
      for (double& v : data) v /= size_;
    }
    return absl::OkStatus();
  }

  bool ThreadSafeProgress() const override {
    static const bool serialized = [] {
      int level = MPI_THREAD_SINGLE;
      MPI_Query_thread(&level);
      return level >= MPI_THREAD_SERIALIZED;
    }();
    return serialized;
  }

  // MPI_Iprobe enters MPI's progress engine (Open MPI: opal_progress, which advances libnbc's
  // collective schedules and the shared-memory transfers) and touches no request of ours. The
  // probe itself matches nothing we would miss: a probe never receives.
  absl::Status Progress() override {
    MpiLock lock(MpiMutex());
    int flag = 0;
    LOOM_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, handle_->comm, &flag,
                              MPI_STATUS_IGNORE));
    return absl::OkStatus();
  }

 private:
  static constexpr int kP2PTag = 7;
  std::shared_ptr<MpiCommHandle> handle_;
  std::shared_ptr<CommState> state_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<CommBackend> MakeMpiBackend(std::shared_ptr<MpiCommHandle> handle,
                                            std::shared_ptr<CommState> state) {
  return std::make_unique<MpiBackend>(std::move(handle), std::move(state));
}

}  // namespace loom
