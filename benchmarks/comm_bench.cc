#include "benchmarks/comm_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/status.h"

namespace loom::bench {

const char* CommOpName(CommOp op) {
  switch (op) {
    case CommOp::kAllReduce:
      return "all_reduce";
    case CommOp::kReduceScatter:
      return "reduce_scatter";
    case CommOp::kAllGather:
      return "all_gather";
    case CommOp::kBroadcast:
      return "broadcast";
    case CommOp::kSendRecv:
      return "sendrecv";
  }
  return "?";
}

absl::StatusOr<std::vector<CommOp>> CommOpsNamed(const std::string& name) {
  const std::vector<CommOp> all = {CommOp::kAllReduce, CommOp::kReduceScatter, CommOp::kAllGather,
                                   CommOp::kBroadcast, CommOp::kSendRecv};
  if (name == "all") return all;
  for (CommOp op : all) {
    if (name == CommOpName(op)) return std::vector<CommOp>{op};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--op: expected all_reduce, reduce_scatter, all_gather, broadcast, sendrecv or all, got '",
      name, "'"));
}

double BusBandwidthFactor(CommOp op, int n) {
  switch (op) {
    case CommOp::kAllReduce:
      return 2.0 * (n - 1) / n;
    case CommOp::kReduceScatter:
    case CommOp::kAllGather:
      return static_cast<double>(n - 1) / n;
    case CommOp::kBroadcast:
    case CommOp::kSendRecv:
      return 1.0;
  }
  return 1.0;
}

absl::StatusOr<int64_t> ParseBytes(const std::string& text) {
  std::string digits = text;
  int64_t scale = 1;
  if (!digits.empty()) {
    const char unit = absl::ascii_toupper(digits.back());
    if (unit == 'K' || unit == 'M' || unit == 'G') {
      scale = unit == 'K' ? int64_t{1} << 10 : unit == 'M' ? int64_t{1} << 20 : int64_t{1} << 30;
      digits.pop_back();
    }
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(digits, &n) || n <= 0 || n > (int64_t{1} << 40) / scale) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected a positive byte count such as 4096, 64K, 1M or 2G, got '", text, "'"));
  }
  return n * scale;
}

namespace {

// The value every rank can predict: rank r's element i. Small integers, so sums over any
// number of ranks in any order are exact in f32.
float Value(int rank, int64_t i) {
  return static_cast<float>(((rank + 1) * 7 + i * 3) % 23) - 11.0f;
}

absl::Status Upload(const Tensor& t, int rank) {
  std::vector<float> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = Value(rank, i);
  return t.CopyFromFloats(v);
}

double NowUs() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The tensors of one op at one size, and how to call it once.
struct Case {
  int64_t bytes = 0, count = 0;  // the table's size and count
  Tensor a, b;                   // input / output (b undefined for in-place ops)
  std::function<absl::Status()> call;
  // Element i of the checked output (which of a, b holds it: `checked`).
  std::function<float(int64_t)> expect;
  Tensor checked;
};

absl::StatusOr<Case> MakeCase(CommOp op, const CommBenchOptions& o, int64_t bytes) {
  Communicator& c = *o.comm;
  const int p = c.size(), r = c.rank();
  const int64_t elem = sizeof(float);
  Case k;
  switch (op) {
    case CommOp::kAllReduce:
    case CommOp::kBroadcast: {
      k.count = std::max<int64_t>(1, bytes / elem);
      LOOM_ASSIGN_OR_RETURN(k.a, Tensor::Empty(Shape{k.count}, DType::kF32, o.device));
      k.checked = k.a;
      if (op == CommOp::kAllReduce) {
        k.call = [&c, t = k.a] { return c.AllReduce(t, ReduceOp::kSum); };
        k.expect = [p](int64_t i) {
          float s = 0;
          for (int q = 0; q < p; ++q) s += Value(q, i);
          return s;
        };
      } else {
        k.call = [&c, t = k.a] { return c.Broadcast(t, 0); };
        k.expect = [](int64_t i) { return Value(0, i); };
      }
      break;
    }
    case CommOp::kReduceScatter:
    case CommOp::kAllGather: {
      // Whole elements per rank, as nccl-tests rounds.
      const int64_t per_rank = std::max<int64_t>(1, bytes / elem / p);
      k.count = per_rank * p;
      LOOM_ASSIGN_OR_RETURN(Tensor big, Tensor::Empty(Shape{k.count}, DType::kF32, o.device));
      LOOM_ASSIGN_OR_RETURN(Tensor small, Tensor::Empty(Shape{per_rank}, DType::kF32, o.device));
      if (op == CommOp::kReduceScatter) {
        k.a = big;
        k.b = small;
        k.checked = small;
        k.call = [&c, in = big, out = small] { return c.ReduceScatter(in, out, ReduceOp::kSum); };
        k.expect = [p, r, per_rank](int64_t i) {
          float s = 0;
          for (int q = 0; q < p; ++q) s += Value(q, r * per_rank + i);
          return s;
        };
      } else {
        k.a = small;
        k.b = big;
        k.checked = big;
        k.call = [&c, in = small, out = big] { return c.AllGather(in, out); };
        k.expect = [per_rank](int64_t i) {
          return Value(static_cast<int>(i / per_rank), i % per_rank);
        };
      }
      break;
    }
    case CommOp::kSendRecv: {
      k.count = std::max<int64_t>(1, bytes / elem);
      LOOM_ASSIGN_OR_RETURN(k.a, Tensor::Empty(Shape{k.count}, DType::kF32, o.device));
      LOOM_ASSIGN_OR_RETURN(k.b, Tensor::Empty(Shape{k.count}, DType::kF32, o.device));
      k.checked = k.b;
      const int right = (r + 1) % p, left = (r + p - 1) % p;
      k.call = [&c, send = k.a, recv = k.b, right, left] {
        std::vector<P2POp> ops = {{P2POp::kSend, send, right}, {P2POp::kRecv, recv, left}};
        return c.BatchSendRecv(ops);
      };
      k.expect = [left](int64_t i) { return Value(left, i); };
      break;
    }
  }
  k.bytes = k.count * elem;
  return k;
}

// Runs `call` iters times between two synchronisations of the device; the slowest rank's
// mean time per call in us.
absl::StatusOr<double> TimeCalls(const CommBenchOptions& o,
                                 const std::function<absl::Status()>& call, int iters) {
  LOOM_RETURN_IF_ERROR(o.device->Synchronize());
  LOOM_RETURN_IF_ERROR(o.comm->Barrier());
  const double t0 = NowUs();
  for (int i = 0; i < iters; ++i) LOOM_RETURN_IF_ERROR(call());
  LOOM_RETURN_IF_ERROR(o.device->Synchronize());
  double us[1] = {(NowUs() - t0) / iters};
  LOOM_RETURN_IF_ERROR(o.comm->AllReduceHost(absl::MakeSpan(us, 1), ReduceOp::kMax));
  return us[0];
}

}  // namespace

absl::StatusOr<std::vector<CommRow>> RunCommBench(
    const CommBenchOptions& o, CommOp op, const std::function<void(const CommRow&)>& on_row) {
  if (o.comm == nullptr || o.device == nullptr) {
    return absl::InvalidArgumentError("RunCommBench needs a communicator and a device");
  }
  if (o.min_bytes <= 0 || o.max_bytes < o.min_bytes || o.factor < 2 || o.iters < 1 ||
      o.warmup < 0 || o.rounds < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bench comm: need 0 < -b (", o.min_bytes, ") <= -e (", o.max_bytes, "), -f >= 2 (",
        o.factor, "), --iters >= 1 (", o.iters, "), --warmup >= 0 (", o.warmup, ")"));
  }
  const int p = o.comm->size();
  const bool with_mpi = op == CommOp::kAllReduce && o.device->is_cpu() && o.plain != MPI_COMM_NULL;
  std::vector<CommRow> rows;
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes;
       bytes = bytes > o.max_bytes / o.factor ? o.max_bytes + 1 : bytes * o.factor) {
    LOOM_ASSIGN_OR_RETURN(Case k, MakeCase(op, o, bytes));
    LOOM_RETURN_IF_ERROR(Upload(k.a, o.comm->rank()));
    std::vector<float> plain_buf;
    std::function<absl::Status()> plain;
    if (with_mpi) {
      plain_buf.assign(k.count, 1.0f);
      plain = [&] {
        LOOM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, plain_buf.data(), static_cast<int>(k.count),
                                     MPI_FLOAT, MPI_SUM, o.plain));
        return absl::OkStatus();
      };
      if (k.count > std::numeric_limits<int>::max()) {
        return absl::InvalidArgumentError(
            "-e: the plain MPI_Allreduce takes at most 2^31-1 floats");
      }
    }
    // Warm-up, then alternating rounds; each side keeps its best round.
    double best = std::numeric_limits<double>::infinity();
    double best_mpi = std::numeric_limits<double>::infinity();
    if (o.warmup > 0) {
      LOOM_RETURN_IF_ERROR(TimeCalls(o, k.call, o.warmup).status());
      if (with_mpi) LOOM_RETURN_IF_ERROR(TimeCalls(o, plain, o.warmup).status());
    }
    for (int round = 0; round < o.rounds; ++round) {
      LOOM_ASSIGN_OR_RETURN(double us, TimeCalls(o, k.call, o.iters));
      best = std::min(best, us);
      if (with_mpi) {
        LOOM_ASSIGN_OR_RETURN(double mpi_us, TimeCalls(o, plain, o.iters));
        best_mpi = std::min(best_mpi, mpi_us);
      }
    }
    // One checked call on fresh inputs (the timed calls reduced the data many times over).
    LOOM_RETURN_IF_ERROR(Upload(k.a, o.comm->rank()));
    LOOM_RETURN_IF_ERROR(k.call());
    LOOM_ASSIGN_OR_RETURN(std::vector<float> got, k.checked.ToFloatVector());
    double wrong[1] = {0};
    for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) {
      if (got[i] != k.expect(i)) wrong[0] += 1;
    }
    LOOM_RETURN_IF_ERROR(o.comm->AllReduceHost(absl::MakeSpan(wrong, 1), ReduceOp::kSum));

    CommRow row;
    row.op = op;
    row.bytes = k.bytes;
    row.count = k.count;
    row.type = "float";
    row.redop = op == CommOp::kAllReduce || op == CommOp::kReduceScatter ? "sum" : "none";
    row.us = best;
    row.algbw = static_cast<double>(k.bytes) / (best * 1e-6) / 1e9;
    row.busbw = row.algbw * BusBandwidthFactor(op, p);
    row.wrong = static_cast<int64_t>(wrong[0]);
    if (with_mpi) {
      row.mpi_us = best_mpi;
      row.mpi_busbw =
          static_cast<double>(k.bytes) / (best_mpi * 1e-6) / 1e9 * BusBandwidthFactor(op, p);
    }
    on_row(row);
    rows.push_back(row);
  }
  return rows;
}

std::string CommTableHeader(bool with_mpi) {
  std::string h1 = absl::StrFormat("#%13s %12s %6s %6s %10s %8s %8s %7s", "size", "count", "type",
                                   "redop", "time", "algbw", "busbw", "#wrong");
  std::string h2 = absl::StrFormat("#%13s %12s %6s %6s %10s %8s %8s %7s", "(B)", "(elements)", "",
                                   "", "(us)", "(GB/s)", "(GB/s)", "");
  if (with_mpi) {
    absl::StrAppend(&h1, absl::StrFormat("  %10s %8s %8s", "mpi time", "mpi bus", "loom/mpi"));
    absl::StrAppend(&h2, absl::StrFormat("  %10s %8s %8s", "(us)", "(GB/s)", ""));
  }
  return absl::StrCat(h1, "\n", h2);
}

std::string FormatCommRow(const CommRow& row, bool with_mpi) {
  std::string s = absl::StrFormat(" %13d %12d %6s %6s %10.1f %8.2f %8.2f %7d", row.bytes, row.count,
                                  row.type, row.redop, row.us, row.algbw, row.busbw, row.wrong);
  if (with_mpi && row.mpi_us > 0) {
    absl::StrAppend(&s, absl::StrFormat("  %10.1f %8.2f %7.1f%%", row.mpi_us, row.mpi_busbw,
                                        100.0 * row.busbw / row.mpi_busbw));
  }
  return s;
}

std::string CommSummary(const std::vector<CommRow>& rows) {
  double sum_ratio = 0, min_ratio = std::numeric_limits<double>::infinity();
  int n = 0;
  for (const CommRow& row : rows) {
    if (row.op != CommOp::kAllReduce || row.mpi_busbw <= 0) continue;
    const double ratio = row.busbw / row.mpi_busbw;
    sum_ratio += ratio;
    min_ratio = std::min(min_ratio, ratio);
    ++n;
  }
  if (n == 0) return "";
  const double mean = sum_ratio / n;
  return absl::StrFormat(
      "all_reduce busbw, loom / plain MPI_Allreduce: mean %.1f%% over %d sizes (lowest %.1f%%); "
      "target >= 95%%: %s",
      100 * mean, n, 100 * min_ratio, mean >= 0.95 ? "PASS" : "MISS");
}

}  // namespace loom::bench
