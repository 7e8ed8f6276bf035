// `loom plan`: ranks the layouts of a job on a machine described by flags (plan/plan.h).
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "job/config.h"
#include "launcher/command.h"
#include "plan/gpu_presets.h"
#include "plan/plan.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Enumerates every valid layout of the job on N GPUs (dp, tp, cp, pp with even or uneven\n"
    "stages, virtual stages, 1F1B/interleaved/zero-bubble schedule, micro-batch size,\n"
    "recomputation none/selective/full, distributed optimizer), predicts the memory per GPU\n"
    "(weights, gradients, optimizer state, activations; a reserve for the CUDA context included)\n"
    "and the step time (compute at peak x efficiency, tp collectives on the critical path, the\n"
    "cp ring beside attention, the dp reduction beside backward with its last bucket exposed,\n"
    "ZeRO's all-gather, pipeline exchanges and bubble; docs/planner.md), and prints the layouts\n"
    "that fit first, fastest first (rank '-': does not fit). MFU is against the GPU's peak.\n"
    "The GPU's figures come from --gpu; each can be overridden. The achievable efficiency is an\n"
    "assumption: the preset's published default, --efficiency, or a --calibration file that\n"
    "`loom bench step --calibration-out` wrote on that GPU. No data is needed.";

absl::Status RunPlan(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> overrides;
  std::string gpu = "h100-sxm";
  const GpuPreset defaults = *FindGpuPreset(gpu);
  PlanMachine m = MachineFromPreset(defaults, 1);
  double achievable = 0;
  std::string calibration;
  PlanSearch search;
  int top = 20;
  std::string csv;
  std::vector<std::string> names;
  for (const GpuPreset& p : GpuPresets()) names.push_back(p.name);
  FlagSet flags("loom plan", kDescription);
  flags.JobFlags(&path, &overrides);
  // PlanLayouts checks the machine's numbers (positive, naming these flags) for every caller.
  flags.Int("--gpus", &m.gpus, "N", "GPUs to lay the job out on").Required();
  flags.Choice("--gpu", &gpu, names,
               "the GPU: sets memory, peak, efficiency, links and GPUs per node (docs/planner.md)");
  flags.Double("--gpu-memory-gib", &m.memory_gib, "M", "usable memory per GPU")
      .DefaultText("from --gpu");
  flags
      .Double("--peak-tflops", &m.peak_tflops, "P",
              "dense peak TFLOP/s per GPU at the job's precision (MFU's denominator)")
      .DefaultText("from --gpu");
  flags
      .Double("--efficiency", &m.efficiency, "E",
              "achievable fraction of the peak for the compute (an assumption, printed)")
      .DefaultText("from --gpu");
  flags
      .Double("--gpu-tflops", &achievable, "T",
              "achievable TFLOP/s per GPU: sets --efficiency to T / peak")
      .DefaultText("peak x efficiency");
  flags.String("--calibration", &calibration, "FILE",
               "take the efficiency from a file `loom bench step --calibration-out` wrote");
  flags
      .Double("--intra-node-gbps", &m.intra_node_gbps, "B1",
              "Gbit/s per GPU per direction inside a node")
      .DefaultText("from --gpu");
  flags
      .Double("--inter-node-gbps", &m.inter_node_gbps, "B2",
              "Gbit/s per GPU per direction between nodes")
      .DefaultText("from --gpu");
  flags.Int("--gpus-per-node", &m.gpus_per_node, "G", "GPUs in one node").DefaultText("from --gpu");
  flags.Int("--max-cp", &search.max_cp, "C", "largest context-parallel degree to try").AtLeast(1);
  flags
      .Int("--max-micro-batch", &search.max_micro_batch, "B",
           "largest micro-batch (sequences) to try")
      .AtLeast(1);
  flags.Bool("--zero-bubble", &search.zero_bubble,
             "also try the ZERO_BUBBLE schedule (pp > 1); on, =false to leave out");
  flags.Bool("--uneven-stages", &search.uneven_stages,
             "also try pp * virtual stages that do not divide the layers; on, =false to leave out");
  flags.Int("--top", &top, "K", "rows to print").AtLeast(0);
  flags.String("--csv", &csv, "FILE", "also write every layout, exact bytes and seconds, as CSV");
  std::string job_out;
  flags.String("--job-out", &job_out, "FILE",
               "also write the job of the top layout that fits (its parallel fields, cp and "
               "schedule included), ready for `loom train` on its world size");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();

  // The preset, then each figure given on the command line over it.
  LOOM_ASSIGN_OR_RETURN(const GpuPreset preset, FindGpuPreset(gpu));
  PlanMachine machine = MachineFromPreset(preset, m.gpus);
  std::string overridden;
  auto take = [&](const char* flag, auto& field, auto value) {
    if (!flags.Given(flag)) return;
    field = value;
    absl::StrAppend(&overridden, overridden.empty() ? "" : ", ", flag);
  };
  take("--gpu-memory-gib", machine.memory_gib, m.memory_gib);
  take("--peak-tflops", machine.peak_tflops, m.peak_tflops);
  take("--intra-node-gbps", machine.intra_node_gbps, m.intra_node_gbps);
  take("--inter-node-gbps", machine.inter_node_gbps, m.inter_node_gbps);
  take("--gpus-per-node", machine.gpus_per_node, m.gpus_per_node);
  const int efficiency_sources =
      flags.Given("--efficiency") + flags.Given("--gpu-tflops") + !calibration.empty();
  if (efficiency_sources > 1) {
    return absl::InvalidArgumentError(
        "give at most one of --efficiency, --gpu-tflops and --calibration");
  }
  if (flags.Given("--efficiency")) {
    machine.efficiency = m.efficiency;
    machine.efficiency_source = "--efficiency";
  } else if (flags.Given("--gpu-tflops")) {
    machine.efficiency = achievable / machine.peak_tflops;
    machine.efficiency_source = absl::StrCat("--gpu-tflops ", achievable);
  } else if (!calibration.empty()) {
    LOOM_ASSIGN_OR_RETURN(std::string text, ReadFile(calibration));
    LOOM_ASSIGN_OR_RETURN(Calibration c, ParseCalibration(text, calibration));
    // The efficiency is a fraction of the peak it was measured against: that must be this
    // machine's peak, or the figure means something else.
    if (std::abs(c.peak_tflops - machine.peak_tflops) > 0.01 * machine.peak_tflops) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s was measured on %s (peak %.6g TFLOP/s), but the plan's GPU is %s (peak %.6g "
          "TFLOP/s); give the matching --gpu or --peak-tflops",
          calibration, c.part, c.peak_tflops, preset.name, machine.peak_tflops));
    }
    machine.efficiency = c.efficiency;
    machine.efficiency_source = absl::StrCat("measured by loom bench step on ", c.part, " (",
                                             calibration, ": ", c.job, ")");
  }
  LOOM_ASSIGN_OR_RETURN(JobConfig config, LoadJobConfig(path, overrides));
  absl::StatusOr<std::vector<PlannedLayout>> plan = PlanLayouts(config, machine, search);
  if (!plan.ok()) {
    return absl::Status(plan.status().code(), absl::StrCat(path, ": ", plan.status().message()));
  }
  int fit = 0;
  for (const PlannedLayout& l : *plan) fit += l.fits;
  const PlanMachine& x = machine;
  std::cout
      << absl::StrFormat(
             "# loom plan: %s on %d GPU(s): %s%s, %d per node, %.4g GiB, links %.5g / %.5g "
             "Gbit/s intra / inter node\n",
             path, x.gpus, x.gpu, overridden.empty() ? "" : " (overridden: " + overridden + ")",
             x.gpus_per_node, x.memory_gib, x.intra_node_gbps, x.inter_node_gbps)
      << absl::StrFormat("# peak %.5g TFLOP/s (dense, the job's precision): MFU is against it\n",
                         x.peak_tflops)
      << absl::StrFormat(
             "# assumed achievable: %.3g of peak = %.5g TFLOP/s for the compute; source: %s\n",
             x.efficiency, x.achievable_tflops(), x.efficiency_source)
      << "# " << plan->size() << " valid layouts, " << fit
      << " fit in memory; ms per step, communication as exposed beside compute "
         "(docs/planner.md); stages = layers per model chunk\n"
      << FormatPlanTable(*plan, top);
  if (!csv.empty()) {
    LOOM_RETURN_IF_ERROR(AtomicWriteFile(csv, FormatPlanCsv(*plan)));
    std::cout << "# every layout: " << csv << "\n";
  }
  if (!job_out.empty()) {
    if (!plan->front().fits) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--job-out ", job_out, ": no layout fits in ", machine.memory_gib,
          " GiB per GPU, so there is no job to write (the table above lists the smallest)"));
    }
    LOOM_RETURN_IF_ERROR(
        AtomicWriteFile(job_out, FormatPlannedJob(config, plan->front(), machine)));
    std::cout << "# the job of rank 1 (" << plan->front().Name() << ", " << plan->front().world()
              << " ranks): " << job_out << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(plan, "plan", "rank the layouts of a job on a machine: loom plan --help",
                      RunPlan);

}  // namespace loom
