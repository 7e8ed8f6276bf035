// `loom bench ops`: per-op forward/backward timings at GPT-2 124M shapes against the device's
// roofline, one table row per op with PASS/MISS against its target (benchmarks/op_bench.h has
// the targets and the timing rules). A MISS is a finding, not an error: the command exits 0
// once every op ran.
#include <cblas.h>
#include <omp.h>

#include <charconv>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "benchmarks/op_bench.h"
#include "ops/roofline.h"
#include "launcher/command.h"
#include "runtime/build_info.h"
#include "runtime/device.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kUsage[] =
    "usage: loom bench ops [--device cpu|cuda] [--shapes tiny|small|gpt2|all] [--iters N]\n"
    "                      [--ops WORD,WORD...]\n"
    "  Times every op's forward and backward at GPT-2 124M shapes (small: B=4 T=64, gpt2: B=8\n"
    "  T=1024; C=768, 12 heads, V=50257) and rates each against the device's roofline:\n"
    "  measured sgemm and memcpy on the CPU, assumed bf16 peak and HBM bandwidth on a GPU.\n"
    "  --device   where the ops run (default cpu; cuda = device 0)\n"
    "  --shapes   which shapes (default all = small + gpt2; tiny is a smoke test)\n"
    "  --iters    timed calls per op after one warm-up (default: auto, ~0.2 s per op)\n"
    "  --ops      only the op families named (e.g. attention,cross_entropy; linear = all GEMMs)\n"
    "  Threads: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS from the environment.";

struct Args {
  std::string device = "cpu";
  std::string shapes = "all";
  int iters = 0;
  std::vector<std::string> ops;
};

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& args) {
  Args out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string key = args[i], value;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key.resize(eq);
    } else if (key.rfind("--", 0) == 0) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(key, " needs a value\n", kUsage));
      }
      value = args[++i];
    }
    if (key == "--device") {
      out.device = value;
    } else if (key == "--shapes") {
      out.shapes = value;
    } else if (key == "--ops") {
      out.ops = absl::StrSplit(value, ',', absl::SkipEmpty());
    } else if (key == "--iters") {
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out.iters);
      if (ec != std::errc() || end != value.data() + value.size() || out.iters < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--iters: expected a positive integer, got '", value, "'"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", args[i], "'\n", kUsage));
    }
  }
  if (out.device != "cpu" && out.device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device: expected cpu or cuda, got '", out.device, "'"));
  }
  return out;
}

absl::Status RunBenchOps(const std::vector<std::string>& argv) {
  if (WantsHelp(argv, kUsage)) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(Args args, ParseArgs(argv));
  LOOM_RETURN_IF_ERROR(bench::ShapesNamed(args.shapes).status());
  Device* device = CpuDevice();
  if (args.device == "cuda") {
    LOOM_ASSIGN_OR_RETURN(device, CudaDevice(0));
  }
  std::cout << "loom bench ops (git " << BuildGitHash() << ", " << BuildType() << "): device "
            << device->Name() << ", OpenMP threads " << omp_get_max_threads()
            << ", OpenBLAS threads " << openblas_get_num_threads() << "\n";
  if (device->is_cpu()) {
    // CPU figures are only as good as the machine is quiet; say how busy it was.
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
  LOOM_ASSIGN_OR_RETURN(bench::Roofline roof, bench::GetRoofline(device));
  std::cout << "roofline:\n  " << absl::StrReplaceAll(roof.description, {{"\n", "\n  "}}) << "\n\n"
            << bench::TableHeader() << "\n"
            << std::flush;
  bench::BenchOptions options;
  options.device = device;
  options.shapes = args.shapes;
  options.iters = args.iters;
  options.ops = args.ops;
  LOOM_ASSIGN_OR_RETURN(std::vector<bench::OpTiming> rows,
                        bench::RunOpBenchmarks(options, roof, [](const bench::OpTiming& row) {
                          std::cout << bench::FormatRow(row) << "\n" << std::flush;
                        }));
  std::cout << "\n" << bench::Summary(rows) << "\n";
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_ops, "bench ops",
                      "time every op fwd/bwd at GPT-2 shapes against the device roofline", kUsage,
                      RunBenchOps);

}  // namespace loom
