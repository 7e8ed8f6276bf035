// `loom plan`: ranks the layouts of a job on a machine described by flags (plan/plan.h).
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "launcher/command.h"
#include "job/config.h"
#include "plan/plan.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kUsage[] =
    "usage: loom plan --config F --gpus N [--gpu-memory-gib M] [--gpu-tflops T]\n"
    "                 [--intra-node-gbps B1] [--inter-node-gbps B2] [--gpus-per-node G]\n"
    "                 [--top K] [--set path=value ...]\n"
    "  Enumerates every valid layout of the job on N GPUs (dp, tp, pp, virtual stages,\n"
    "  micro-batch size, recomputation none/selective/full, distributed optimizer), predicts\n"
    "  the memory per GPU (weights, gradients, optimizer state, activations; a reserve for the\n"
    "  CUDA context included) and the step time (compute at T TFLOP/s per GPU, tensor-parallel\n"
    "  collectives on the intra-node links, data-parallel gradient reduction on the inter-node\n"
    "  links when the dp group spans nodes, pipeline transfers and bubble), and prints the\n"
    "  layouts that fit first, fastest first (rank '-': does not fit).\n"
    "  --gpu-memory-gib M   memory per GPU (default 80)\n"
    "  --gpu-tflops T       achievable TFLOP/s per GPU at the job's precision (default 400)\n"
    "  --intra-node-gbps B1 Gbit/s per GPU inside a node (default 3600, NVLink 4)\n"
    "  --inter-node-gbps B2 Gbit/s per GPU between nodes (default 400, 400G InfiniBand)\n"
    "  --gpus-per-node G    default 8\n"
    "  --top K              rows to print (default 20)\n"
    "  --csv FILE           also write every layout, exact bytes and seconds, as CSV";

absl::Status RunPlan(const std::vector<std::string>& argv) {
  if (WantsHelp(argv, kUsage)) return absl::OkStatus();
  std::vector<std::string> args = argv;
  std::string path;
  std::vector<std::string> overrides;
  absl::Status flags = ExtractConfigFlags(&args, &path, &overrides);
  if (!flags.ok()) return flags;
  PlanMachine m;
  int top = 20;
  std::string csv;
  bool gpus_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name, value;
    LOOM_RETURN_IF_ERROR(TakeFlag(args, &i, &name, &value, kUsage));
    auto number = [&](double* out) -> absl::Status {
      if (!absl::SimpleAtod(value, out)) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " expects a number, got '", value, "'"));
      }
      return absl::OkStatus();
    };
    auto integer = [&](int* out) -> absl::Status {
      if (!absl::SimpleAtoi(value, out)) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " expects an integer, got '", value, "'"));
      }
      return absl::OkStatus();
    };
    absl::Status s;
    if (name == "--gpus") {
      s = integer(&m.gpus);
      gpus_given = true;
    } else if (name == "--gpu-memory-gib") {
      s = number(&m.memory_gib);
    } else if (name == "--gpu-tflops") {
      s = number(&m.tflops);
    } else if (name == "--intra-node-gbps") {
      s = number(&m.intra_node_gbps);
    } else if (name == "--inter-node-gbps") {
      s = number(&m.inter_node_gbps);
    } else if (name == "--gpus-per-node") {
      s = integer(&m.gpus_per_node);
    } else if (name == "--top") {
      s = integer(&top);
    } else if (name == "--csv") {
      csv = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", args[i], "'\n", kUsage));
    }
    if (!s.ok()) return s;
  }
  if (path.empty())
    return absl::InvalidArgumentError(absl::StrCat("--config is required\n", kUsage));
  if (!gpus_given) return absl::InvalidArgumentError(absl::StrCat("--gpus is required\n", kUsage));
  absl::StatusOr<JobConfig> config = LoadJobConfig(path, overrides);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::vector<PlannedLayout>> plan = PlanLayouts(*config, m);
  if (!plan.ok()) {
    return absl::Status(plan.status().code(), absl::StrCat(path, ": ", plan.status().message()));
  }
  int fit = 0;
  for (const PlannedLayout& l : *plan) fit += l.fits;
  std::cout << "# loom plan: " << path << " on " << m.gpus << " GPU(s) (" << m.gpus_per_node
            << " per node, " << m.memory_gib << " GiB, " << m.tflops << " TFLOP/s, "
            << m.intra_node_gbps << " / " << m.inter_node_gbps << " Gbit/s intra / inter node)\n"
            << "# " << plan->size() << " valid layouts, " << fit << " fit in memory; times in ms "
            << "per step, not overlapped\n"
            << FormatPlanTable(*plan, top);
  if (!csv.empty()) {
    LOOM_RETURN_IF_ERROR(AtomicWriteFile(csv, FormatPlanCsv(*plan)));
    std::cout << "# every layout: " << csv << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(plan, "plan", "rank the layouts of a job on a machine: loom plan --help",
                      kUsage, RunPlan);

}  // namespace loom
