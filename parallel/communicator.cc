#include "parallel/communicator.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace loom {

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kAvg:
      return "avg";
  }
  return "?";
}

namespace {

class DoneWork : public CommWork {
 public:
  absl::Status Wait() override { return absl::OkStatus(); }
  absl::StatusOr<bool> Test() override { return true; }
};

absl::Status WaitFor(absl::StatusOr<std::unique_ptr<CommWork>> work) {
  if (!work.ok()) return work.status();
  return (*work)->Wait();
}

}  // namespace

std::unique_ptr<CommWork> CompletedWork() { return std::make_unique<DoneWork>(); }

std::string FormatRankList(const std::vector<int>& ranks) {
  if (ranks.size() <= 8) return absl::StrJoin(ranks, ",");
  const int stride = ranks[1] - ranks[0];
  bool arithmetic = true;
  for (size_t i = 1; i < ranks.size(); ++i) arithmetic &= ranks[i] - ranks[i - 1] == stride;
  if (arithmetic) {
    return absl::StrCat(ranks[0], ",", ranks[1], ",...,", ranks.back(), " (", ranks.size(),
                        " ranks, stride ", stride, ")");
  }
  return absl::StrCat(ranks[0], ",", ranks[1], ",", ranks[2], ",...,", ranks.back(), " (",
                      ranks.size(), " ranks)");
}

Communicator::Communicator(std::string name, std::vector<int> world_ranks, int rank,
                           std::shared_ptr<CommState> state, std::unique_ptr<CommBackend> mpi,
                           std::unique_ptr<CommBackend> device)
    : name_(std::move(name)),
      world_ranks_(std::move(world_ranks)),
      rank_(rank),
      state_(std::move(state)),
      mpi_(std::move(mpi)),
      device_(std::move(device)) {}

std::string Communicator::Describe() const {
  return absl::StrCat(name_, " [", FormatRankList(world_ranks_), "]");
}

std::string Communicator::What(const char* op, const Tensor& t, const std::string& extra) const {
  return absl::StrCat(op, extra, " of ", t.nbytes(), " bytes (", t.numel(), " x ",
                      std::string(DTypeName(t.dtype())), ") on ", Describe());
}

absl::StatusOr<CommBackend*> Communicator::BackendFor(const Tensor& t, const char* op) const {
  if (!t.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(op, " on ", Describe(), ": undefined tensor"));
  }
  if (t.on_host()) return mpi_.get();
  if (device_ != nullptr) return device_.get();
  // One rank moves nothing: its operations complete at once, with no backend (the trainer
  // gives none to a world of one).
  if (size() == 1) return static_cast<CommBackend*>(nullptr);
  return absl::FailedPreconditionError(
      absl::StrCat(op, " on ", Describe(), ": the tensor is on ", t.device()->Name(),
                   " but this communicator has no backend for that device (it was created for CPU "
                   "training)"));
}

namespace {

absl::Status SameDeviceAndType(const Tensor& a, const Tensor& b, const std::string& what) {
  if (a.device() != b.device() || a.dtype() != b.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": input ", a.DebugString(),
                                                   " and output ", b.DebugString(),
                                                   " must share device and dtype"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::AllReduceAsync(const Tensor& t,
                                                                       ReduceOp op) {
  LOOM_ASSIGN_OR_RETURN(CommBackend * b, BackendFor(t, "all_reduce"));
  if (size() == 1 || t.numel() == 0) return CompletedWork();
  ++issued_.all_reduce;
  return b->AllReduce(t, op, What("all_reduce", t, absl::StrCat("(", ReduceOpName(op), ")")));
}

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::ReduceScatterAsync(const Tensor& in,
                                                                           const Tensor& out,
                                                                           ReduceOp op) {
  LOOM_ASSIGN_OR_RETURN(CommBackend * b, BackendFor(in, "reduce_scatter"));
  const std::string what =
      What("reduce_scatter", in, absl::StrCat("(", ReduceOpName(op), ")"));
  LOOM_RETURN_IF_ERROR(SameDeviceAndType(in, out, what));
  if (in.numel() != out.numel() * size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the input has ", in.numel(),
                                                   " elements, expected ", size(), " x ",
                                                   out.numel(), " (group size x output)"));
  }
  if (size() == 1) {
    if (in.data() != out.data()) LOOM_RETURN_IF_ERROR(out.CopyFrom(in.FlatView(0, in.numel())));
    return CompletedWork();
  }
  if (out.numel() == 0) return CompletedWork();
  ++issued_.reduce_scatter;
  return b->ReduceScatter(in, out, op, what);
}

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::AllGatherAsync(const Tensor& in,
                                                                       const Tensor& out) {
  std::vector<int64_t> counts(size(), in.numel());
  return AllGatherVAsync(in, out, counts);
}

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::AllGatherVAsync(
    const Tensor& in, const Tensor& out, absl::Span<const int64_t> counts) {
  LOOM_ASSIGN_OR_RETURN(CommBackend * b, BackendFor(in, "all_gather"));
  const std::string what = What("all_gather", out);
  LOOM_RETURN_IF_ERROR(SameDeviceAndType(in, out, what));
  if (static_cast<int>(counts.size()) != size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", counts.size(), " counts for a group of ", size()));
  }
  int64_t total = 0;
  for (int64_t c : counts) {
    if (c < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative count ", c));
    total += c;
  }
  if (in.numel() != counts[rank_] || out.numel() != total) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": this rank (", rank_, ") contributes ", in.numel(), " elements where counts say ",
        counts[rank_], ", and the output holds ", out.numel(), " where the counts sum to ", total));
  }
  if (size() == 1) {
    if (in.data() != out.data()) LOOM_RETURN_IF_ERROR(out.FlatView(0, total).CopyFrom(
        in.FlatView(0, in.numel())));
    return CompletedWork();
  }
  if (total == 0) return CompletedWork();
  const bool equal =
      std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; });
  ++(equal ? issued_.all_gather : issued_.all_gather_unequal);
  return b->AllGatherV(in, out, std::vector<int64_t>(counts.begin(), counts.end()), what);
}

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::BroadcastAsync(const Tensor& t, int root) {
  LOOM_ASSIGN_OR_RETURN(CommBackend * b, BackendFor(t, "broadcast"));
  const std::string what = What("broadcast", t, absl::StrCat("(root ", root, ")"));
  if (root < 0 || root >= size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": root ", root, " is not a rank of a group of ", size()));
  }
  if (size() == 1 || t.numel() == 0) return CompletedWork();
  ++issued_.broadcast;
  return b->Broadcast(t, root, what);
}

absl::StatusOr<std::unique_ptr<CommWork>> Communicator::BatchSendRecvAsync(
    absl::Span<const P2POp> ops) {
  if (ops.empty()) return CompletedWork();
  int64_t bytes = 0;
  for (const P2POp& op : ops) bytes += static_cast<int64_t>(op.tensor.nbytes());
  std::vector<std::string> parts;
  for (const P2POp& op : ops) {
    parts.push_back(absl::StrCat(op.kind == P2POp::kSend ? "send " : "recv ", op.tensor.nbytes(),
                                 " bytes ", op.kind == P2POp::kSend ? "to " : "from ", op.peer));
  }
  const std::string what =
      absl::StrCat("send_recv [", absl::StrJoin(parts, "; "), "] (", bytes, " bytes) on ",
                   Describe(), " from rank ", rank_);
  LOOM_ASSIGN_OR_RETURN(CommBackend * b, BackendFor(ops[0].tensor, "send_recv"));
  for (const P2POp& op : ops) {
    if (op.peer < 0 || op.peer >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": peer ", op.peer, " is not a rank of a group of ", size()));
    }
    LOOM_ASSIGN_OR_RETURN(CommBackend * other, BackendFor(op.tensor, "send_recv"));
    if (other != b) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": one batch mixes host and device tensors"));
    }
  }
  if (b == nullptr) {
    // One rank sending to itself: each send lands in the receive that matches it in order.
    std::vector<const Tensor*> sends, recvs;
    for (const P2POp& op : ops) (op.kind == P2POp::kSend ? sends : recvs).push_back(&op.tensor);
    if (sends.size() != recvs.size()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", sends.size(), " send(s) and ",
                                                     recvs.size(), " receive(s) to oneself"));
    }
    for (size_t i = 0; i < sends.size(); ++i) {
      if (sends[i]->nbytes() != recvs[i]->nbytes()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": a send of ", sends[i]->nbytes(),
                                                       " bytes meets a receive of ",
                                                       recvs[i]->nbytes()));
      }
    }
    for (size_t i = 0; i < sends.size(); ++i) LOOM_RETURN_IF_ERROR(recvs[i]->CopyFrom(*sends[i]));
    return CompletedWork();
  }
  ++issued_.send_recv;
  return b->BatchSendRecv(ops, what);
}

absl::Status Communicator::AllReduce(const Tensor& t, ReduceOp op) {
  return WaitFor(AllReduceAsync(t, op));
}
absl::Status Communicator::ReduceScatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  return WaitFor(ReduceScatterAsync(in, out, op));
}
absl::Status Communicator::AllGather(const Tensor& in, const Tensor& out) {
  return WaitFor(AllGatherAsync(in, out));
}
absl::Status Communicator::AllGatherV(const Tensor& in, const Tensor& out,
                                      absl::Span<const int64_t> counts) {
  return WaitFor(AllGatherVAsync(in, out, counts));
}
absl::Status Communicator::Broadcast(const Tensor& t, int root) {
  return WaitFor(BroadcastAsync(t, root));
}
absl::Status Communicator::Send(const Tensor& t, int peer) {
  P2POp op{P2POp::kSend, t, peer};
  return WaitFor(BatchSendRecvAsync(absl::MakeConstSpan(&op, 1)));
}
absl::Status Communicator::Recv(const Tensor& t, int peer) {
  P2POp op{P2POp::kRecv, t, peer};
  return WaitFor(BatchSendRecvAsync(absl::MakeConstSpan(&op, 1)));
}
absl::Status Communicator::BatchSendRecv(absl::Span<const P2POp> ops) {
  return WaitFor(BatchSendRecvAsync(ops));
}
absl::Status Communicator::Barrier() {
  if (size() == 1) return absl::OkStatus();
  return mpi_->Barrier(absl::StrCat("barrier on ", Describe()));
}
absl::Status Communicator::AllReduceHost(absl::Span<double> data, ReduceOp op) {
  if (size() == 1 || data.empty()) return absl::OkStatus();
  return mpi_->AllReduceHost(data, op,
                             absl::StrCat("all_reduce(", ReduceOpName(op), ") of ", data.size(),
                                          " host double(s) on ", Describe()));
}

}  // namespace loom
