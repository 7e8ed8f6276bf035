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

constexpr char kDescription[] =
    "Times every op's forward and backward at GPT-2 124M shapes (small: B=4 T=64, gpt2: B=8\n"
    "T=1024; C=768, 12 heads, V=50257) and rates each against the device's roofline:\n"
    "measured sgemm and memcpy on the CPU, assumed bf16 peak and HBM bandwidth on a GPU.\n"
    "Threads: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS from the environment.";

struct Args {
  std::string device = "cpu";
  std::string shapes = "all";
  int iters = 0;
  std::vector<std::string> ops;
};

absl::Status RunBenchOps(const std::vector<std::string>& argv) {
  Args args;
  FlagSet flags("loom bench ops", kDescription);
  flags.Choice("--device", &args.device, {"cpu", "cuda"}, "where the ops run (cuda = device 0)");
  flags.Choice("--shapes", &args.shapes, {"tiny", "small", "gpt2", "all"},
               "which shapes (all = small + gpt2; tiny is a smoke test)");
  flags.Int("--iters", &args.iters, "N", "timed calls per op after one warm-up")
      .AtLeast(1)
      .DefaultText("auto, ~0.2 s per op");
  flags.Custom("--ops", "WORD,WORD...",
               "only the op families named (e.g. attention,cross_entropy; linear = all GEMMs)",
               [&](absl::string_view value) {
                 args.ops = absl::StrSplit(value, ',', absl::SkipEmpty());
                 return absl::OkStatus();
               });
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(argv));
  if (!run) return absl::OkStatus();
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
                      "time every op fwd/bwd at GPT-2 shapes against the device roofline",
                      RunBenchOps);

}  // namespace loom
