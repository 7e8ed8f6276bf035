// `loom bench comm`: times the collectives of a Communicator (MPI backend for CPU tensors,
// NCCL for CUDA tensors) over a range of message sizes, in the manner of nccl-tests, and
// checks every result.
//
// Columns (as nccl-tests defines them): size is the bytes of the largest buffer of the call
// (all-reduce and broadcast: the tensor; reduce-scatter: the input; all-gather: the output;
// send/recv: what each rank sends), count its elements, time the mean per call in us (the
// slowest rank's mean), algbw = size / time, busbw = algbw x the op's bus factor for n ranks:
// all_reduce 2(n-1)/n, reduce_scatter and all_gather (n-1)/n, broadcast and sendrecv 1. #wrong
// counts the elements, over all ranks, that differ from the expected result of one checked call
// made after the timed ones with inputs every rank can predict (small integers: exact in f32).
//
// On the CPU the all_reduce rows also time a plain MPI_Allreduce of the same bytes on the same
// ranks in the same run (the yardstick: loom's all-reduce must reach >= 95% of its
// busbw). Loom and plain MPI are timed in alternating rounds and each keeps its best round, so
// a machine busy with other work penalises both alike.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "runtime/device.h"

namespace loom::bench {

enum class CommOp { kAllReduce, kReduceScatter, kAllGather, kBroadcast, kSendRecv };

const char* CommOpName(CommOp op);
// "all_reduce", ..., "sendrecv", or "all" for every op.
absl::StatusOr<std::vector<CommOp>> CommOpsNamed(const std::string& name);
// nccl-tests' bus-bandwidth factor of `op` on n ranks.
double BusBandwidthFactor(CommOp op, int n);

struct CommBenchOptions {
  Communicator* comm = nullptr;
  Device* device = nullptr;        // where the tensors live (CPU: MPI; CUDA: NCCL)
  MPI_Comm plain = MPI_COMM_NULL;  // the same ranks as `comm`, for the plain MPI_Allreduce
  int64_t min_bytes = 1 << 20, max_bytes = 64 << 20;
  int64_t factor = 2;  // sizes min, min*factor, ... up to max
  int iters = 20;      // timed calls per round
  int warmup = 5;
  int rounds = 3;  // alternating rounds of loom and plain MPI (CPU all_reduce)
};

struct CommRow {
  CommOp op;
  int64_t bytes = 0, count = 0;
  std::string type, redop;
  double us = 0, algbw = 0, busbw = 0;  // GB/s = 1e9 bytes/s
  int64_t wrong = 0;
  // CPU all_reduce only: the plain MPI_Allreduce of the same bytes (0 when not measured).
  double mpi_us = 0, mpi_busbw = 0;
};

// Runs `op` at every size; `on_row` sees each row as it finishes (on every rank).
absl::StatusOr<std::vector<CommRow>> RunCommBench(
    const CommBenchOptions& options, CommOp op, const std::function<void(const CommRow&)>& on_row);

// The table header (two lines) and one row; with_mpi adds the plain-MPI columns.
std::string CommTableHeader(bool with_mpi);
std::string FormatCommRow(const CommRow& row, bool with_mpi);
// For all_reduce rows with plain-MPI figures: both busbw summed over the sizes, their ratio
// and the verdict against the 95% target.
std::string CommSummary(const std::vector<CommRow>& rows);

// "1M" -> 1048576 (K, M, G suffixes, powers of 1024; plain digits are bytes).
absl::StatusOr<int64_t> ParseBytes(const std::string& text);

}  // namespace loom::bench
