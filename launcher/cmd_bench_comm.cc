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

constexpr char kUsage[] =
    "usage: mpirun -np N loom bench comm [--op all_reduce|reduce_scatter|all_gather|broadcast|\n"
    "                                     sendrecv|all] [-b MIN] [-e MAX] [-f FACTOR]\n"
    "                                     [--iters N] [--warmup N] [--device cpu|cuda]\n"
    "  Times each collective of the world communicator from MIN to MAX bytes (sizes MIN,\n"
    "  MIN*FACTOR, ...; K/M/G suffixes) and prints nccl-tests' columns: size, count, type,\n"
    "  redop, time (us, slowest rank), algbw and busbw (GB/s) and #wrong (elements of one\n"
    "  checked call that differ from the expected values, over all ranks).\n"
    "  On the CPU the all_reduce table also times a plain MPI_Allreduce of the same bytes and\n"
    "  prints both busbw and loom's share of it (target >= 95%).\n"
    "  --op      which collective (default all)\n"
    "  -b, -e    smallest and largest size in bytes (default 1M and 64M)\n"
    "  -f        size factor between rows (default 2)\n"
    "  --iters   timed calls per round (default 20; 3 rounds, the best is kept)\n"
    "  --warmup  untimed calls first (default 5)\n"
    "  --device  cpu: CPU tensors over MPI (default); cuda: CUDA tensors over NCCL, one GPU per\n"
    "            rank chosen by local rank";

struct Args {
  std::string op = "all";
  std::string device = "cpu";
  int64_t min_bytes = 1 << 20, max_bytes = 64 << 20, factor = 2;
  int iters = 20, warmup = 5;
};

absl::StatusOr<int> ParseCount(const std::string& key, const std::string& value, int least) {
  int n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || n < least) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": expected an integer >= ", least, ", got '", value, "'"));
  }
  return n;
}

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& args) {
  Args out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string key = args[i], value;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key.resize(eq);
    } else if (key.rfind("-", 0) == 0) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(key, " needs a value\n", kUsage));
      }
      value = args[++i];
    }
    auto bytes = [&](int64_t* dst) -> absl::Status {
      auto n = bench::ParseBytes(value);
      if (!n.ok()) return absl::InvalidArgumentError(absl::StrCat(key, ": ", n.status().message()));
      *dst = *n;
      return absl::OkStatus();
    };
    if (key == "--op") {
      out.op = value;
    } else if (key == "--device") {
      out.device = value;
    } else if (key == "-b" || key == "--minbytes") {
      LOOM_RETURN_IF_ERROR(bytes(&out.min_bytes));
    } else if (key == "-e" || key == "--maxbytes") {
      LOOM_RETURN_IF_ERROR(bytes(&out.max_bytes));
    } else if (key == "-f" || key == "--stepfactor") {
      LOOM_ASSIGN_OR_RETURN(int f, ParseCount(key, value, 2));
      out.factor = f;
    } else if (key == "--iters" || key == "-n") {
      LOOM_ASSIGN_OR_RETURN(out.iters, ParseCount(key, value, 1));
    } else if (key == "--warmup" || key == "-w") {
      LOOM_ASSIGN_OR_RETURN(out.warmup, ParseCount(key, value, 0));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", args[i], "'\n", kUsage));
    }
  }
  if (out.device != "cpu" && out.device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device: expected cpu or cuda, got '", out.device, "'"));
  }
  if (out.max_bytes < out.min_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("-e (", out.max_bytes, " bytes) is below -b (", out.min_bytes, ")"));
  }
  return out;
}

absl::Status RunBenchComm(const std::vector<std::string>& argv) {
  if (WantsHelp(argv, kUsage)) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(Args args, ParseArgs(argv));
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
                      kUsage, RunBenchComm);

}  // namespace loom
