// NCCL backend (CUDA builds only; nccl_backend_stub.cc stands in otherwise). See nccl_backend.h
// for the streams, the ordering events, the keep-alive rule and the deadlines.
#include "parallel/nccl_backend.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ops/cuda/context.h"
#include "runtime/host_wait.h"
#include "runtime/status.h"

namespace loom {
namespace {

// One NCCL communicator and the stream its operations run on. Shared by the backend and by
// every operation in flight on it, so it outlives the backend until those have completed.
struct NcclComm {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0;
  std::string name;                  // the group's name ("tp", "dp", ...), for times and aborts
  std::atomic<bool> aborted{false};  // ncclCommAbort was called: never destroy it again
  ~NcclComm() {
    (void)UseCudaDevice(device);
    // Every operation issued on it has completed by now (each holds this object until it has),
    // so destroying does not wait on a peer.
    if (comm != nullptr && !aborted.load()) ncclCommDestroy(comm);
    if (stream != nullptr && !aborted.load()) cudaStreamDestroy(stream);
  }
};

// Every NCCL communicator of the process, so that the watchdog can abort them all
// (AbortNcclCommunicators) without knowing who owns them.
struct LiveComms {
  std::mutex mu;
  std::vector<std::weak_ptr<NcclComm>> comms;
};
LiveComms& Live() {
  static auto* live = new LiveComms();  // never destroyed: an abort may come during exit
  return *live;
}

// Completion events, reused: one cudaEventCreate per collective cost ~1-2 us of host time per
// call and made the driver's event table grow with the step count. Timing is enabled, so a
// collective's time on its stream comes from the events themselves (TakeNcclDeviceSeconds).
class EventPool {
 public:
  absl::StatusOr<cudaEvent_t> Take(int device) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& free = free_[device];
      if (!free.empty()) {
        cudaEvent_t e = free.back();
        free.pop_back();
        return e;
      }
    }
    cudaEvent_t e = nullptr;
    LOOM_CUDA_CHECK(cudaEventCreate(&e));
    return e;
  }
  void Give(int device, cudaEvent_t e) {
    if (e == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    free_[device].push_back(e);
  }

 private:
  std::mutex mu_;
  std::map<int, std::vector<cudaEvent_t>> free_;
};
EventPool& Events() {
  static auto* pool = new EventPool();  // never destroyed (events outlive static destruction)
  return *pool;
}

// Seconds each communicator's operations spent on its stream, from their events, not yet
// taken by TakeNcclDeviceSeconds.
struct DeviceTimes {
  std::mutex mu;
  std::map<std::string, double> seconds;
};
DeviceTimes& Times() {
  static auto* times = new DeviceTimes();
  return *times;
}

// One NCCL operation in flight: its completion event, its deadline and what to say about it.
struct InFlight {
  std::shared_ptr<NcclComm> comm;
  cudaEvent_t start = nullptr;  // recorded on comm->stream before the operation (pooled)
  cudaEvent_t done = nullptr;   // recorded on comm->stream after the operation (pooled)
  absl::Time deadline;
  absl::Duration timeout;
  int64_t step = -1;  // the training step it was issued in
  std::string what;
  // The tensors of a CommWork that stopped waiting for it (deadline passed, or an error):
  // kept as long as the operation may still read or write them.
  std::vector<Tensor> orphans;
  ~InFlight() {
    // Back to the pool only when the operation is over: an event still pending on a stream
    // (a timed-out collective) must not be recorded again by another operation.
    const bool over = done != nullptr && cudaEventQuery(done) == cudaSuccess;
    if (over) {
      Events().Give(comm->device, start);
      Events().Give(comm->device, done);
    }
  }
  // Adds the operation's time on its stream to its communicator's total (once, when complete).
  void Account() {
    if (accounted || start == nullptr) return;
    accounted = true;
    float ms = 0;
    if (cudaEventElapsedTime(&ms, start, done) == cudaSuccess) {
      std::lock_guard<std::mutex> lock(Times().mu);
      Times().seconds[comm->name] += ms / 1e3;
    } else {
      cudaGetLastError();
    }
  }
  bool accounted = false;
};

absl::Status DeadlineError(const InFlight& op) {
  return absl::DeadlineExceededError(absl::StrCat(
      op.what, " did not complete within ", absl::FormatDuration(op.timeout),
      op.step >= 0 ? absl::StrCat(" at step ", op.step) : std::string(" (outside a step)"),
      ": a peer did not join (stalled, crashed or issued a different operation); "
      "runtime.collective_timeout_s sets this deadline"));
}

// True once `op` has completed; false while it runs within its deadline; an error when it is
// past its deadline or NCCL / CUDA report a failure.
absl::StatusOr<bool> Poll(const InFlight& op, absl::Time now) {
  if (op.comm->aborted.load()) {
    return absl::AbortedError(absl::StrCat(op.what, ": its NCCL communicator was aborted"));
  }
  const cudaError_t q = cudaEventQuery(op.done);
  if (q == cudaSuccess) return true;
  if (q != cudaErrorNotReady) {
    cudaGetLastError();
    return absl::InternalError(
        absl::StrCat(op.what, ": CUDA reports ", cudaGetErrorString(q), " while it runs"));
  }
  ncclResult_t async = ncclSuccess;
  if (ncclCommGetAsyncError(op.comm->comm, &async) == ncclSuccess && async != ncclSuccess &&
      async != ncclInProgress) {
    return absl::InternalError(absl::StrCat(op.what, ": NCCL reports ", ncclGetErrorString(async),
                                            " (", ncclGetLastError(op.comm->comm), ")"));
  }
  if (now > op.deadline) return DeadlineError(op);
  return false;
}

// Blocks the host until `op` completes, spinning briefly, then yielding, then sleeping in short
// naps (as the MPI backend's waits do), up to its deadline.
absl::Status BlockOn(const InFlight& op) {
  const absl::Time start = absl::Now();
  for (int64_t polls = 0;; ++polls) {
    const absl::Time now = absl::Now();
    LOOM_ASSIGN_OR_RETURN(bool done, Poll(op, now));
    if (done) return absl::OkStatus();
    if (polls < 256) continue;
    if (now - start > absl::Milliseconds(5)) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    } else {
      sched_yield();
    }
  }
}

// Every NCCL operation of the process that may still be running. Wait and Test look through it
// so that a stuck operation is reported even though they never block on the GPU.
class InFlightRegistry {
 public:
  void Add(std::shared_ptr<InFlight> op) {
    std::lock_guard<std::mutex> lock(mu_);
    ops_.push_back(std::move(op));
  }
  // Forgets completed operations; the first error among the rest (past its deadline, or a
  // failure NCCL or CUDA reports), oldest first.
  absl::Status Check() {
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    for (auto it = ops_.begin(); it != ops_.end();) {
      absl::StatusOr<bool> done = Poll(**it, now);
      if (!done.ok()) return done.status();
      if (*done) (*it)->Account();
      it = *done ? ops_.erase(it) : std::next(it);
    }
    return absl::OkStatus();
  }
  // Blocks until no operation is in flight (each within its deadline): the allocator's gate
  // before cudaFree, which would otherwise wait for the communication streams unbounded.
  absl::Status WaitAll() {
    for (int64_t polls = 0;; ++polls) {
      LOOM_RETURN_IF_ERROR(Check());
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (ops_.empty()) return absl::OkStatus();
      }
      if (polls > 256) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 private:
  std::mutex mu_;
  std::deque<std::shared_ptr<InFlight>> ops_;
};

InFlightRegistry& Registry() {
  static auto* registry = new InFlightRegistry();  // never destroyed: outlives every work
  return *registry;
}

class NcclWork : public CommWork {
 public:
  NcclWork(std::shared_ptr<InFlight> op, std::vector<Tensor> keep, int device)
      : op_(std::move(op)), keep_(std::move(keep)), device_(device) {}

  ~NcclWork() override {
    if (!waited_) (void)Block();
  }

  absl::Status Wait() override {
    if (waited_) return status_;
    waited_ = true;
    status_ = OrderOpsStream();
    return status_;
  }

  absl::StatusOr<bool> Test() override {
    if (waited_) return true;
    absl::Status s = Registry().Check();
    if (!s.ok()) {
      Orphan();
      return s;
    }
    const cudaError_t q = cudaEventQuery(op_->done);
    if (q == cudaErrorNotReady) return false;
    if (q != cudaSuccess) {
      cudaGetLastError();
      return absl::InternalError(absl::StrCat(op_->what, ": ", cudaGetErrorString(q)));
    }
    LOOM_RETURN_IF_ERROR(Wait());
    return true;
  }

  // Blocks the host until the operation completes (Barrier, destruction without Wait).
  absl::Status Block() {
    if (waited_) return status_;
    waited_ = true;
    status_ = BlockOn(*op_);
    if (status_.ok()) {
      keep_.clear();
    } else {
      Orphan();
    }
    return status_;
  }

 private:
  // Wait(): every operation in flight within its deadline, then the ops' stream made to wait
  // for this one. After that the tensors may go back to the allocator (runtime/device.h).
  absl::Status OrderOpsStream() {
    absl::Status s = Registry().Check();
    if (s.ok()) s = EnqueueWait();
    if (!s.ok()) {
      Orphan();
      return s;
    }
    keep_.clear();
    return absl::OkStatus();
  }

  absl::Status EnqueueWait() {
    LOOM_ASSIGN_OR_RETURN(ops::cuda::DeviceContext * ctx, ops::cuda::GetDeviceContext(device_));
    LOOM_CUDA_CHECK(cudaStreamWaitEvent(ctx->stream, op_->done, 0));
    return absl::OkStatus();
  }

  // The operation may still use the tensors: they live on with its record.
  void Orphan() {
    for (Tensor& t : keep_) op_->orphans.push_back(std::move(t));
    keep_.clear();
  }

  std::shared_ptr<InFlight> op_;
  std::vector<Tensor> keep_;
  int device_;
  bool waited_ = false;
  absl::Status status_;
};

absl::StatusOr<ncclDataType_t> ReduceType(DType t, const std::string& what) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    case DType::kI32:
      return ncclInt32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": the NCCL backend reduces f32, bf16, f16 and i32, not ",
                       std::string(DTypeName(t))));
  }
}

ncclRedOp_t NcclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kAvg:
      return ncclAvg;
  }
  return ncclSum;
}

bool Overlaps(const Tensor& a, const Tensor& b) {
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

char* Bytes(const Tensor& t, int64_t elem) {
  return static_cast<char*>(t.data()) + elem * static_cast<int64_t>(DTypeSize(t.dtype()));
}

// Runs `body` (which issues NCCL calls) between ncclGroupStart and ncclGroupEnd; the group is
// always closed, even when a call inside fails.
absl::Status Grouped(const std::function<absl::Status()>& body) {
  LOOM_NCCL_CHECK(ncclGroupStart());
  absl::Status s = body();
  const ncclResult_t end = ncclGroupEnd();
  LOOM_RETURN_IF_ERROR(s);
  LOOM_NCCL_CHECK(end);
  return absl::OkStatus();
}

class NcclBackend : public CommBackend {
 public:
  NcclBackend(std::shared_ptr<CommState> state, Device* device, std::shared_ptr<NcclComm> comm,
              cudaEvent_t ready, std::unique_ptr<CommBackend> mpi, Tensor barrier, int rank,
              int size)
      : state_(std::move(state)),
        device_(device),
        comm_(std::move(comm)),
        ready_(ready),
        mpi_(std::move(mpi)),
        barrier_(std::move(barrier)),
        rank_(rank),
        size_(size) {}

  ~NcclBackend() override {
    if (ready_ != nullptr) cudaEventDestroy(ready_);
  }

  absl::StatusOr<std::unique_ptr<CommWork>> AllReduce(const Tensor& t, ReduceOp op,
                                                      const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(t, what));
    LOOM_ASSIGN_OR_RETURN(ncclDataType_t type, ReduceType(t.dtype(), what));
    return Issue(what, {t}, [&](cudaStream_t s) -> absl::Status {
      LOOM_NCCL_CHECK(ncclAllReduce(t.data(), t.data(), static_cast<size_t>(t.numel()), type,
                                    NcclOp(op), comm_->comm, s));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatter(const Tensor& in, const Tensor& out,
                                                          ReduceOp op,
                                                          const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(in, what));
    LOOM_RETURN_IF_ERROR(OnDevice(out, what));
    LOOM_ASSIGN_OR_RETURN(ncclDataType_t type, ReduceType(in.dtype(), what));
    // NCCL reduces in place when the output is this rank's block of the input (the distributed
    // optimizer's gradient shard); any other overlap goes through a temporary.
    Tensor dst = out;
    if (out.data() != Bytes(in, rank_ * out.numel()) && Overlaps(in, out)) {
      LOOM_ASSIGN_OR_RETURN(dst, Tensor::Empty(out.shape(), out.dtype(), out.device()));
    }
    return Issue(what, {in, out, dst}, [&](cudaStream_t s) -> absl::Status {
      LOOM_NCCL_CHECK(ncclReduceScatter(in.data(), dst.data(), static_cast<size_t>(out.numel()),
                                        type, NcclOp(op), comm_->comm, s));
      if (dst.data() != out.data()) {
        LOOM_CUDA_CHECK(
            cudaMemcpyAsync(out.data(), dst.data(), out.nbytes(), cudaMemcpyDeviceToDevice, s));
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::unique_ptr<CommWork>> AllGatherV(const Tensor& in, const Tensor& out,
                                                       const std::vector<int64_t>& counts,
                                                       const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(in, what));
    LOOM_RETURN_IF_ERROR(OnDevice(out, what));
    const size_t elem = DTypeSize(in.dtype());
    std::vector<int64_t> displs(size_);
    int64_t at = 0;
    bool equal = true;
    for (int r = 0; r < size_; ++r) {
      displs[r] = at;
      at += counts[r];
      equal &= counts[r] == counts[0];
    }
    char* mine = Bytes(out, displs[rank_]);
    // `in` already in its place inside `out` is NCCL's in-place gather; any other overlap would
    // be overwritten while it is sent, so it is sent from a copy.
    Tensor src = in;
    if (in.data() != mine && Overlaps(in, out)) {
      LOOM_ASSIGN_OR_RETURN(src, Tensor::Empty(in.shape(), in.dtype(), in.device()));
    }
    return Issue(what, {in, out, src}, [&](cudaStream_t s) -> absl::Status {
      if (src.data() != in.data()) {
        LOOM_CUDA_CHECK(
            cudaMemcpyAsync(src.data(), in.data(), in.nbytes(), cudaMemcpyDeviceToDevice, s));
      }
      if (equal) {
        // Moved as bytes: a gather does no arithmetic, so every dtype travels unchanged.
        LOOM_NCCL_CHECK(
            ncclAllGather(src.data(), out.data(), in.nbytes(), ncclUint8, comm_->comm, s));
        return absl::OkStatus();
      }
      // NCCL has no all-gather with unequal counts: one broadcast per member, grouped.
      return Grouped([&]() -> absl::Status {
        for (int r = 0; r < size_; ++r) {
          if (counts[r] == 0) continue;
          char* dst = Bytes(out, displs[r]);
          const void* send = r == rank_ ? src.data() : dst;
          LOOM_NCCL_CHECK(ncclBroadcast(send, dst, static_cast<size_t>(counts[r]) * elem, ncclUint8,
                                        r, comm_->comm, s));
        }
        return absl::OkStatus();
      });
    });
  }

  absl::StatusOr<std::unique_ptr<CommWork>> Broadcast(const Tensor& t, int root,
                                                      const std::string& what) override {
    LOOM_RETURN_IF_ERROR(OnDevice(t, what));
    return Issue(what, {t}, [&](cudaStream_t s) -> absl::Status {
      LOOM_NCCL_CHECK(
          ncclBroadcast(t.data(), t.data(), t.nbytes(), ncclUint8, root, comm_->comm, s));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::unique_ptr<CommWork>> BatchSendRecv(absl::Span<const P2POp> ops,
                                                          const std::string& what) override {
    std::vector<Tensor> keep;
    for (const P2POp& op : ops) {
      LOOM_RETURN_IF_ERROR(OnDevice(op.tensor, what));
      keep.push_back(op.tensor);
    }
    return Issue(what, std::move(keep), [&](cudaStream_t s) -> absl::Status {
      // One group: NCCL posts every send and receive together, and matches those between one
      // pair of ranks in the order they are issued.
      return Grouped([&]() -> absl::Status {
        for (const P2POp& op : ops) {
          if (op.tensor.numel() == 0) continue;
          if (op.kind == P2POp::kSend) {
            LOOM_NCCL_CHECK(
                ncclSend(op.tensor.data(), op.tensor.nbytes(), ncclUint8, op.peer, comm_->comm, s));
          } else {
            LOOM_NCCL_CHECK(
                ncclRecv(op.tensor.data(), op.tensor.nbytes(), ncclUint8, op.peer, comm_->comm, s));
          }
        }
        return absl::OkStatus();
      });
    });
  }

  // An all-reduce of one device int the host waits for: every member has reached the barrier
  // once it completes. (Communicator::Barrier uses MPI; this serves callers of the backend.)
  absl::Status Barrier(const std::string& what) override {
    LOOM_ASSIGN_OR_RETURN(std::unique_ptr<CommWork> work,
                          AllReduce(barrier_, ReduceOp::kSum, what));
    return static_cast<NcclWork*>(work.get())->Block();
  }

  absl::Status AllReduceHost(absl::Span<double> data, ReduceOp op,
                             const std::string& what) override {
    return mpi_->AllReduceHost(data, op, what);
  }

 private:
  absl::Status OnDevice(const Tensor& t, const std::string& what) const {
    if (t.device() != device_) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": ", t.DebugString(), " but this communicator's NCCL runs on ", device_->Name()));
    }
    return absl::OkStatus();
  }

  // Orders the communication stream after the ops' stream, lets `enqueue` queue the transfer
  // there, records its completion and registers it. `keep` lives in the CommWork until Wait.
  absl::StatusOr<std::unique_ptr<CommWork>> Issue(
      const std::string& what, std::vector<Tensor> keep,
      const std::function<absl::Status(cudaStream_t)>& enqueue) {
    LOOM_ASSIGN_OR_RETURN(ops::cuda::DeviceContext * ctx,
                          ops::cuda::GetDeviceContext(device_->index()));
    auto op = std::make_shared<InFlight>();
    op->comm = comm_;
    op->what = what;
    op->timeout = state_->timeout;
    op->step = state_->step.load();
    LOOM_ASSIGN_OR_RETURN(op->start, Events().Take(comm_->device));
    LOOM_ASSIGN_OR_RETURN(op->done, Events().Take(comm_->device));
    LOOM_CUDA_CHECK(cudaEventRecord(ready_, ctx->stream));
    LOOM_CUDA_CHECK(cudaStreamWaitEvent(comm_->stream, ready_, 0));
    // After the wait for the ops' stream: the time measured is the operation's own (peers'
    // lateness included), not the compute queued before it.
    LOOM_CUDA_CHECK(cudaEventRecord(op->start, comm_->stream));
    const absl::Status queued = enqueue(comm_->stream);
    LOOM_CUDA_CHECK(cudaEventRecord(op->done, comm_->stream));
    op->deadline = absl::Now() + op->timeout;
    if (!queued.ok()) {
      // Part of the operation (a copy, some calls of a group) may be queued: its tensors stay
      // with the record until the stream has passed it.
      op->orphans = std::move(keep);
      Registry().Add(std::move(op));
      return queued;
    }
    Registry().Add(op);
    return std::unique_ptr<CommWork>(
        std::make_unique<NcclWork>(std::move(op), std::move(keep), device_->index()));
  }

  std::shared_ptr<CommState> state_;
  Device* device_;
  std::shared_ptr<NcclComm> comm_;
  cudaEvent_t ready_;                 // the ops' stream at issue; waited on by comm_->stream
  std::unique_ptr<CommBackend> mpi_;  // host scalars
  Tensor barrier_;                    // one i32 on the device, for Barrier
  int rank_, size_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CommBackend>> MakeNcclBackend(std::shared_ptr<MpiCommHandle> group,
                                                             std::shared_ptr<CommState> state,
                                                             Device* cuda_device,
                                                             const std::string& name) {
  // Once per process: host waits on device work (runtime/host_wait.h) report a collective past
  // its deadline by name, and the allocator frees its cache only with no collective in flight.
  static const bool hooked = [] {
    AddHostWaitCheck([] { return Registry().Check(); });
    CachingAllocator::SetCacheReleaseGate([] { return Registry().WaitAll(); });
    return true;
  }();
  (void)hooked;
  if (cuda_device == nullptr || !cuda_device->is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the NCCL backend needs a CUDA device, got ",
                     cuda_device == nullptr ? std::string("none") : cuda_device->Name()));
  }
  int rank = 0, size = 1;
  LOOM_MPI_CHECK(MPI_Comm_rank(group->comm, &rank));
  LOOM_MPI_CHECK(MPI_Comm_size(group->comm, &size));
  LOOM_RETURN_IF_ERROR(UseCudaDevice(cuda_device->index()));
  // Group rank 0 makes the id and broadcasts it with a flag, so that when it fails the other
  // members return an error too instead of waiting in ncclCommInitRank.
  struct {
    int32_t ok;
    ncclUniqueId id;
  } msg{};
  ncclResult_t made = ncclSuccess;
  if (rank == 0) {
    made = ncclGetUniqueId(&msg.id);
    msg.ok = made == ncclSuccess ? 1 : 0;
  }
  LOOM_MPI_CHECK(MPI_Bcast(&msg, sizeof(msg), MPI_BYTE, 0, group->comm));
  if (!msg.ok) {
    return absl::InternalError(
        rank == 0 ? absl::StrCat("ncclGetUniqueId failed: ", ncclGetErrorString(made))
                  : std::string("group rank 0 could not make the NCCL unique id"));
  }
  auto comm = std::make_shared<NcclComm>();
  comm->device = cuda_device->index();
  comm->name = name.empty() ? std::string("nccl") : name;
  LOOM_NCCL_CHECK(ncclCommInitRank(&comm->comm, size, msg.id, rank));
  {
    std::lock_guard<std::mutex> lock(Live().mu);
    auto& live = Live().comms;
    live.erase(std::remove_if(live.begin(), live.end(),
                              [](const std::weak_ptr<NcclComm>& c) { return c.expired(); }),
               live.end());
    live.push_back(comm);
  }
  // The highest priority, so the transfers are not starved by compute kernels queued before
  // them on the ops' stream.
  int least = 0, greatest = 0;
  LOOM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  LOOM_CUDA_CHECK(cudaStreamCreateWithPriority(&comm->stream, cudaStreamNonBlocking, greatest));
  cudaEvent_t ready = nullptr;
  LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  absl::StatusOr<Tensor> barrier = Tensor::Zeros(Shape{1}, DType::kI32, cuda_device);
  if (!barrier.ok()) {
    cudaEventDestroy(ready);
    return barrier.status();
  }
  std::unique_ptr<CommBackend> mpi = MakeMpiBackend(group, state);
  return std::unique_ptr<CommBackend>(
      std::make_unique<NcclBackend>(std::move(state), cuda_device, std::move(comm), ready,
                                    std::move(mpi), *std::move(barrier), rank, size));
}

int AbortNcclCommunicators(absl::Duration limit) {
  std::vector<std::shared_ptr<NcclComm>> comms;
  {
    std::lock_guard<std::mutex> lock(Live().mu);
    for (auto& weak : Live().comms) {
      if (auto c = weak.lock()) comms.push_back(std::move(c));
    }
  }
  if (comms.empty()) return 0;
  // ncclCommAbort stops the communicator's kernels and proxy threads; it should not block, but
  // a wedged driver must not keep the job from ending: a helper thread does it while this one
  // waits at most `limit`.
  auto done = std::make_shared<std::atomic<int>>(0);
  std::thread([comms, done] {
    for (const auto& c : comms) {
      bool expected = false;
      if (c->aborted.compare_exchange_strong(expected, true) && c->comm != nullptr) {
        (void)UseCudaDevice(c->device);
        ncclCommAbort(c->comm);
      }
      done->fetch_add(1);
    }
  }).detach();
  const absl::Time until = absl::Now() + limit;
  while (done->load() < static_cast<int>(comms.size()) && absl::Now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done->load();
}

std::map<std::string, double> TakeNcclDeviceSeconds() {
  (void)Registry().Check();  // accounts the operations completed since the last look
  std::lock_guard<std::mutex> lock(Times().mu);
  return std::exchange(Times().seconds, {});
}

}  // namespace loom
