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

constexpr char kDescription[] =
    "Enumerates every valid layout of the job on N GPUs (dp, tp, pp, virtual stages,\n"
    "micro-batch size, recomputation none/selective/full, distributed optimizer), predicts\n"
    "the memory per GPU (weights, gradients, optimizer state, activations; a reserve for the\n"
    "CUDA context included) and the step time (compute at T TFLOP/s per GPU, tensor-parallel\n"
    "collectives on the intra-node links, data-parallel gradient reduction on the inter-node\n"
    "links when the dp group spans nodes, pipeline transfers and bubble), and prints the\n"
    "layouts that fit first, fastest first (rank '-': does not fit).";

absl::Status RunPlan(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> overrides;
  PlanMachine m;
  int top = 20;
  std::string csv;
  FlagSet flags("loom plan", kDescription);
  flags.JobFlags(&path, &overrides);
  // PlanLayouts checks the machine's numbers (positive, naming these flags) for every caller.
  flags.Int("--gpus", &m.gpus, "N", "GPUs to lay the job out on").Required();
  flags.Double("--gpu-memory-gib", &m.memory_gib, "M", "memory per GPU");
  flags.Double("--gpu-tflops", &m.tflops, "T", "achievable TFLOP/s per GPU at the job's precision");
  flags.Double("--intra-node-gbps", &m.intra_node_gbps, "B1",
               "Gbit/s per GPU inside a node (NVLink 4: 3600)");
  flags.Double("--inter-node-gbps", &m.inter_node_gbps, "B2",
               "Gbit/s per GPU between nodes (400G InfiniBand: 400)");
  flags.Int("--gpus-per-node", &m.gpus_per_node, "G", "GPUs in one node");
  flags.Int("--top", &top, "K", "rows to print").AtLeast(0);
  flags.String("--csv", &csv, "FILE", "also write every layout, exact bytes and seconds, as CSV");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
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
                      RunPlan);

}  // namespace loom
