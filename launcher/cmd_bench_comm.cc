// `loom bench comm`: an nccl-tests style table per collective over the world communicator, for
// CPU tensors (MPI) or CUDA tensors (NCCL), every result checked (benchmarks/comm_bench.h has
// the columns and the timing rules). Run it under mpirun; rank 0 prints. A wrong element is an
// error (exit non-zero after the table); a MISS against the all-reduce target is a finding.
#include <charconv>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "benchmarks/comm_bench.h"
#include "launcher/command.h"
#include "parallel/world.h"
#include "runtime/build_info.h"
#include "runtime/cuda_device_choice.h"
#include "runtime/device.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Times each collective of the world communicator from MIN to MAX bytes (sizes MIN,\n"
    "MIN*FACTOR, ...; K/M/G suffixes) and prints nccl-tests' columns: size, count, type,\n"
    "redop, time (us, slowest rank), algbw and busbw (GB/s) and #wrong (elements of one\n"
    "checked call that differ from the expected values, over all ranks).\n"
    "On the CPU the all_reduce table also times a plain MPI_Allreduce of the same bytes and\n"
    "prints both busbw and loom's share of it (target >= 95%).";

struct Args {
  std::string op = "all";
  std::string device = "cpu";
  int64_t min_bytes = 1 << 20, max_bytes = 64 << 20;
  int factor = 2, iters = 20, warmup = 5;
};

// The flags, parsed into *out; false when --help was printed.
absl::StatusOr<bool> ParseArgs(const std::vector<std::string>& args, Args* out) {
  FlagSet flags("mpirun -np N loom bench comm", kDescription);
  flags.Choice("--op", &out->op,
               {"all_reduce", "reduce_scatter", "all_gather", "broadcast", "sendrecv", "all"},
               "which collective");
  auto bytes = [](int64_t* dst) {
    return [dst](absl::string_view value) -> absl::Status {
      LOOM_ASSIGN_OR_RETURN(*dst, bench::ParseBytes(std::string(value)));
      return absl::OkStatus();
    };
  };
  flags.Custom("-b", "MIN", "smallest size in bytes", bytes(&out->min_bytes))
      .Alias("--minbytes")
      .DefaultText("1M");
  flags.Custom("-e", "MAX", "largest size in bytes", bytes(&out->max_bytes))
      .Alias("--maxbytes")
      .DefaultText("64M");
  flags.Int("-f", &out->factor, "FACTOR", "size factor between rows")
      .Alias("--stepfactor")
      .AtLeast(2);
  flags.Int("--iters", &out->iters, "N", "timed calls per round (3 rounds, the best is kept)")
      .Alias("-n")
      .AtLeast(1);
  flags.Int("--warmup", &out->warmup, "N", "untimed calls first").Alias("-w").AtLeast(0);
  flags.Choice("--device", &out->device, {"cpu", "cuda"},
               "cpu: CPU tensors over MPI; cuda: CUDA tensors over NCCL, one GPU per rank chosen "
               "by local rank");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (run && out->max_bytes < out->min_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("-e (", out->max_bytes, " bytes) is below -b (", out->min_bytes, ")"));
  }
  return run;
}

absl::Status RunBenchComm(const std::vector<std::string>& argv) {
  Args args;
  LOOM_ASSIGN_OR_RETURN(bool run, ParseArgs(argv, &args));
  if (!run) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(std::vector<bench::CommOp> ops, bench::CommOpsNamed(args.op));
  LOOM_ASSIGN_OR_RETURN(World * world, World::Get());
  Device* device = CpuDevice();
  if (args.device == "cuda") {
    // As the trainer chooses (runtime/cuda_device_choice.h): one visible GPU per rank is
    // device 0, otherwise local rank mod visible.
    LOOM_ASSIGN_OR_RETURN(int index,
                          ChooseCudaDevice(LocalPlacement{world->local_rank(), world->local_size()},
                                           CudaDeviceCount(), CudaUnavailableReason()));
    LOOM_ASSIGN_OR_RETURN(device, CudaDevice(index));
    LOOM_RETURN_IF_ERROR(world->UseCuda(device));
  }
  const bool lead = world->rank() == 0;
  if (lead) {
    std::cout << "loom bench comm (git " << BuildGitHash() << ", " << BuildType()
              << "): " << world->size() << " ranks, tensors on " << device->Name() << " ("
              << (device->is_cpu() ? "MPI" : "NCCL") << "), " << args.iters
              << " timed calls x 3 rounds (best kept) after " << args.warmup << " warm-up\n";
    if (device->is_cpu()) {
      std::ifstream loadavg("/proc/loadavg");
      double load = 0;
      if (loadavg >> load) {
        std::cout << "load average " << load << " on " << std::thread::hardware_concurrency()
                  << " hardware threads"
                  << (load > std::thread::hardware_concurrency() ? " (busy: expect noisy figures)"
                                                                 : "")
                  << "\n";
      }
    }
    if (world->size() == 1) std::cout << "(one rank: nothing travels; run under mpirun -np N)\n";
  }
  bench::CommBenchOptions options;
  options.comm = &world->comm();
  options.device = device;
  options.plain = MPI_COMM_WORLD;
  options.min_bytes = args.min_bytes;
  options.max_bytes = args.max_bytes;
  options.factor = args.factor;
  options.iters = args.iters;
  options.warmup = args.warmup;
  int64_t wrong = 0;
  for (bench::CommOp op : ops) {
    const bool with_mpi = op == bench::CommOp::kAllReduce && device->is_cpu();
    if (lead) {
      std::cout << "\n# " << bench::CommOpName(op) << "\n"
                << bench::CommTableHeader(with_mpi) << "\n"
                << std::flush;
    }
    LOOM_ASSIGN_OR_RETURN(std::vector<bench::CommRow> rows,
                          bench::RunCommBench(options, op, [&](const bench::CommRow& row) {
                            if (lead) {
                              std::cout << bench::FormatCommRow(row, with_mpi) << "\n"
                                        << std::flush;
                            }
                          }));
    for (const bench::CommRow& row : rows) wrong += row.wrong;
    const std::string summary = bench::CommSummary(rows);
    if (lead && !summary.empty()) std::cout << "# " << summary << "\n";
  }
  if (wrong > 0) {
    return absl::InternalError(absl::StrCat(
        "bench comm: ", wrong, " element(s) differ from the expected results (#wrong column)"));
  }
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_comm, "bench comm",
                      "time the collectives (MPI or NCCL) over message sizes, nccl-tests style",
                      RunBenchComm);

}  // namespace loom
