// Communicator: collectives and point-to-point transfers of Tensors among one group of ranks
// (the world, or a tensor-, data-, pipeline-, model-parallel or embedding group of the rank
// grid). Callers never branch on the backend: a host tensor travels over MPI (the group's own
// MPI communicator), a device tensor over the group's device backend: NCCL for CUDA (on a
// communication stream ordered against the ops' stream by events), the test device's stream
// backend (parallel/test_comm_backend.h) for test-device tensors, with the same ordering. A group
// of one rank needs no backend: its operations complete at once (a copy where out is not in).
//
// Every operation has an asynchronous form returning a CommWork to wait on, so later work can
// overlap communication with compute; the blocking forms are the asynchronous ones followed by
// Wait(). Promises:
// - Every wait has a deadline (CommOptions::timeout, the job's runtime.collective_timeout_s).
//   An operation that does not complete in time returns DeadlineExceeded naming the operation,
//   the group and its members, the byte count and the training step (CommState::step). The
//   peers' requests stay posted; the caller ends the job (World::Abort), so nothing hangs.
// - Inputs are checked before anything is posted: dtypes, sizes that must divide, devices.
//   A bad call is InvalidArgument and posts nothing, so no peer is left waiting because of it.
// - A CommWork keeps its tensors' storage alive until it has been waited on, so memory freed by
//   the caller meanwhile cannot be handed to another op while a transfer still uses it.
// - Results are bitwise identical on every member of the group (MPI and NCCL reduce in one
//   order for all members).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "runtime/tensor.h"

namespace loom {

enum class ReduceOp { kSum, kMax, kAvg };
const char* ReduceOpName(ReduceOp op);

// Shared by every communicator of one job: the deadline of each wait and the step that error
// messages name (the trainer sets it at the start of each step).
struct CommState {
  absl::Duration timeout = absl::Seconds(300);
  std::atomic<int64_t> step{-1};  // -1: not in a training step (start-up, tools)
  // Called now and then by a wait that has lasted a while (MPI waits: after ~100 ms, every few
  // ms), with the description of the operation waited on. The world uses it to answer a peer's
  // watchdog roll call (World::TakeRollCall) while this rank itself is still inside a wait.
  std::function<void(const std::string& what)> on_long_wait;
};

// One pending operation. Wait() at most once; destroying an unwaited CommWork waits for it
// (ignoring errors) so buffers are never released under a transfer.
class CommWork {
 public:
  virtual ~CommWork() = default;
  // Returns when the result may be used: on the host for CPU tensors; by later work on the
  // ops' stream for device tensors (the ops' stream is made to wait; the host does not block).
  // DeadlineExceeded (see above) when the deadline passes first.
  virtual absl::Status Wait() = 0;
  // Non-blocking: true once complete. Also drives MPI's progress engine, so a CPU caller that
  // polls between ops lets a nonblocking collective advance while it computes.
  virtual absl::StatusOr<bool> Test() = 0;
};

// One side of a point-to-point transfer in a batch (see BatchSendRecv).
struct P2POp {
  enum Kind { kSend, kRecv };
  Kind kind;
  Tensor tensor;
  int peer;  // rank within the communicator
};

// The backend of one communicator (MPI, NCCL or the test device's); see mpi_backend.h,
// nccl_backend.h and test_comm_backend.h. Calls
// arrive already validated; `what` describes the call for error messages.
class CommBackend {
 public:
  virtual ~CommBackend() = default;
  virtual absl::StatusOr<std::unique_ptr<CommWork>> AllReduce(const Tensor& t, ReduceOp op,
                                                              const std::string& what) = 0;
  virtual absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatter(const Tensor& in,
                                                                  const Tensor& out, ReduceOp op,
                                                                  const std::string& what) = 0;
  // counts[r] elements from rank r, placed in rank order in `out`.
  virtual absl::StatusOr<std::unique_ptr<CommWork>> AllGatherV(
      const Tensor& in, const Tensor& out, const std::vector<int64_t>& counts,
      const std::string& what) = 0;
  virtual absl::StatusOr<std::unique_ptr<CommWork>> Broadcast(const Tensor& t, int root,
                                                              const std::string& what) = 0;
  virtual absl::StatusOr<std::unique_ptr<CommWork>> BatchSendRecv(absl::Span<const P2POp> ops,
                                                                  const std::string& what) = 0;
  virtual absl::Status Barrier(const std::string& what) = 0;
  // Host scalars, always over MPI (losses, flags, counters), blocking.
  virtual absl::Status AllReduceHost(absl::Span<double> data, ReduceOp op,
                                     const std::string& what) = 0;
  // Whether Progress() may be called from a thread other than the one posting operations,
  // concurrently with it. False by default (NCCL needs no host progress).
  virtual bool ThreadSafeProgress() const { return false; }
  // Advances pending operations without completing (or freeing) any: their owners still Test
  // or Wait them. A no-op by default.
  virtual absl::Status Progress() { return absl::OkStatus(); }
};

class Communicator {
 public:
  // name: "world", "tp", "dp", ...; world_ranks: the members by world rank, in group-rank
  // order; rank: this process's rank within the group. The backends: `mpi` is required (it
  // carries host tensors and host scalars), `device` is optional (NCCL for CUDA tensors, the
  // test device's backend for its tensors; without it a device tensor is refused with a
  // message, unless the group has one rank, which needs no backend).
  Communicator(std::string name, std::vector<int> world_ranks, int rank,
               std::shared_ptr<CommState> state, std::unique_ptr<CommBackend> mpi,
               std::unique_ptr<CommBackend> device = nullptr);

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  int size() const { return static_cast<int>(world_ranks_.size()); }
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  // "tp [0,1]" or, for long lists, "dp [0,4,...,60] (16 ranks, stride 4)".
  std::string Describe() const;
  CommState& state() const { return *state_; }
  // Operations handed to a backend since construction (groups of one and empty tensors hand
  // nothing), by kind: what tests count (ZeRO-1: one reduce-scatter and one all-gather of equal
  // shards per bucket, no gather of unequal ones, which NCCL runs as one broadcast per rank).
  struct IssuedCounts {
    int64_t all_reduce = 0, reduce_scatter = 0, all_gather = 0, all_gather_unequal = 0,
            broadcast = 0, send_recv = 0;
  };
  const IssuedCounts& issued() const { return issued_; }
  // Whether device tensors have a backend (NCCL or the test device's).
  bool has_device_backend() const { return device_ != nullptr; }
  bool has_nccl() const { return has_device_backend(); }  // the older name

  // In place over all members.
  absl::StatusOr<std::unique_ptr<CommWork>> AllReduceAsync(const Tensor& t, ReduceOp op);
  // in holds size() equal blocks of out.numel() elements; member r receives the reduction of
  // block r. in.numel() must be size() * out.numel().
  absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatterAsync(const Tensor& in, const Tensor& out,
                                                               ReduceOp op);
  // out = concatenation of every member's `in`, in rank order; out.numel() = size()*in.numel().
  absl::StatusOr<std::unique_ptr<CommWork>> AllGatherAsync(const Tensor& in, const Tensor& out);
  // Unequal counts: member r contributes counts[r] elements (in.numel() == counts[rank()]);
  // out.numel() == sum(counts).
  absl::StatusOr<std::unique_ptr<CommWork>> AllGatherVAsync(const Tensor& in, const Tensor& out,
                                                            absl::Span<const int64_t> counts);
  // t on `root` is copied into t on every other member.
  absl::StatusOr<std::unique_ptr<CommWork>> BroadcastAsync(const Tensor& t, int root);
  // All sends and receives posted together and completed together (NCCL group / MPI
  // isend+irecv), so neighbours that both send and receive cannot deadlock. Transfers between
  // the same pair of ranks match in the order they are listed.
  absl::StatusOr<std::unique_ptr<CommWork>> BatchSendRecvAsync(absl::Span<const P2POp> ops);

  // Blocking forms.
  absl::Status AllReduce(const Tensor& t, ReduceOp op);
  absl::Status ReduceScatter(const Tensor& in, const Tensor& out, ReduceOp op);
  absl::Status AllGather(const Tensor& in, const Tensor& out);
  absl::Status AllGatherV(const Tensor& in, const Tensor& out, absl::Span<const int64_t> counts);
  absl::Status Broadcast(const Tensor& t, int root);
  absl::Status Send(const Tensor& t, int peer);
  absl::Status Recv(const Tensor& t, int peer);
  absl::Status BatchSendRecv(absl::Span<const P2POp> ops);
  absl::Status Barrier();
  // Host values (losses, counts, flags) over MPI whatever the device: data[i] reduced over all
  // members, in place. kAvg divides the sum by size().
  absl::Status AllReduceHost(absl::Span<double> data, ReduceOp op);

  // Background progress of CPU (MPI) operations: on the CPU a nonblocking collective advances
  // only inside MPI calls, so a helper thread may call ProgressCpu() every so often while the
  // caller computes (GradReducer does). CpuProgressFromAnyThread() says whether that is allowed
  // (MPI initialised at MPI_THREAD_SERIALIZED or above; the MPI backend then serialises its own
  // calls). ProgressCpu() completes nothing: the owners of the CommWorks still Test or Wait.
  bool CpuProgressFromAnyThread() const { return mpi_->ThreadSafeProgress(); }
  absl::Status ProgressCpu() { return mpi_->Progress(); }

 private:
  // The backend for a tensor's device, or an error naming the op and the device. nullptr (no
  // backend needed) for a device tensor in a group of one rank: callers complete those first.
  absl::StatusOr<CommBackend*> BackendFor(const Tensor& t, const char* op) const;
  // "all_reduce(sum) of 4096 bytes (1024 x f32) on tp [0,1]": the description errors carry.
  std::string What(const char* op, const Tensor& t, const std::string& extra = "") const;

  std::string name_;
  std::vector<int> world_ranks_;
  int rank_;
  std::shared_ptr<CommState> state_;
  std::unique_ptr<CommBackend> mpi_;
  std::unique_ptr<CommBackend> device_;
  IssuedCounts issued_;
};

// A CommWork that is already complete (size-1 groups, empty tensors).
std::unique_ptr<CommWork> CompletedWork();

// "0,1,2,3" or "0,4,...,60 (16 ranks, stride 4)" for an arithmetic run; lists of up to 8 are
// written out whole.
std::string FormatRankList(const std::vector<int>& ranks);

}  // namespace loom
