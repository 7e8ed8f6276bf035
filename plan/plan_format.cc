// `loom plan`'s table and CSV (plan/plan.h).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "job/config_text.h"
#include "plan/plan.h"
#include "plan/stage_split.h"

namespace loom {

std::string FormatPlanTable(const std::vector<PlannedLayout>& layouts, int rows) {
  auto gib = [](double b) { return b / 1073741824.0; };
  auto ms = [](double s) { return s * 1e3; };
  std::string out = absl::StrFormat(
      "%4s %5s %2s %2s %3s %2s %-14s %-11s %5s %-9s %-3s | %8s %8s %8s | %9s %8s %7s %7s %7s %7s "
      "%7s | %9s %5s\n",
      "rank", "dp", "tp", "cp", "pp", "v", "stages", "sched", "micro", "recompute", "zero",
      "mem GiB", "state", "acts", "step ms", "compute", "tp", "cp", "dp", "pp", "bubble", "tok/s",
      "MFU");
  int shown = 0;
  for (const PlannedLayout& l : layouts) {
    if (shown++ >= rows) break;
    const MemoryEstimate& e = l.memory;
    const double state =
        static_cast<double>(e.weights + e.gradients + e.master_weights + e.optimizer_moments);
    absl::StrAppendFormat(
        &out,
        "%4s %5d %2d %2d %3d %2d %-14s %-11s %5d %-9s %-3s | %8.2f %8.2f %8.2f | %9.1f %8.1f %7.1f "
        "%7.1f %7.1f %7.1f %7.1f | %9s %4.1f%%\n",
        l.fits ? absl::StrCat(shown) : std::string("-"), l.degrees.dp, l.degrees.tp, l.cp,
        l.degrees.pp, l.degrees.virtual_stages, FormatStageLayers(l.chunk_layers),
        PlanScheduleName(l.schedule), l.micro_batch, RecomputeName(l.degrees.recompute),
        l.distributed_optimizer ? "yes" : "no", gib(static_cast<double>(e.total + l.reserve)),
        gib(state), gib(static_cast<double>(e.activations)), ms(l.time.total()), ms(l.time.compute),
        ms(l.time.tp_comm), ms(l.time.cp_comm), ms(l.time.dp_comm), ms(l.time.pp_comm),
        ms(l.time.bubble), absl::StrFormat("%.4g", l.tokens_per_s), l.mfu * 100);
  }
  return out;
}

std::string FormatPlanCsv(const std::vector<PlannedLayout>& layouts) {
  std::string out =
      "rank,dp,tp,pp,virtual_stages,micro_batch,recompute,distributed_optimizer,fits,"
      "memory_bytes,state_bytes,activation_bytes,step_s,compute_s,tp_comm_s,dp_comm_s,pp_comm_s,"
      "bubble_s,tokens_per_s,mfu,cp,schedule,stage_layers,cp_comm_s,dp_hidden_s\n";
  int rank = 0;
  for (const PlannedLayout& l : layouts) {
    const MemoryEstimate& e = l.memory;
    std::string split;
    for (int n : l.chunk_layers) absl::StrAppend(&split, split.empty() ? "" : " ", n);
    absl::StrAppendFormat(
        &out,
        "%d,%d,%d,%d,%d,%d,%s,%d,%d,%d,%d,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4f,%d,%s,%s,%.6g,"
        "%.6g\n",
        l.fits ? ++rank : 0, l.degrees.dp, l.degrees.tp, l.degrees.pp, l.degrees.virtual_stages,
        l.micro_batch, RecomputeName(l.degrees.recompute),
        static_cast<int>(l.distributed_optimizer), static_cast<int>(l.fits), e.total,
        e.weights + e.gradients + e.master_weights + e.optimizer_moments, e.activations,
        l.time.total(), l.time.compute, l.time.tp_comm, l.time.dp_comm, l.time.pp_comm,
        l.time.bubble, l.tokens_per_s, l.mfu, l.cp, PlanScheduleName(l.schedule), split,
        l.time.cp_comm, l.time.dp_hidden);
  }
  return out;
}

std::string FormatPlannedJob(const JobConfig& config, const PlannedLayout& l,
                             const PlanMachine& m) {
  return absl::StrFormat(
      "# loom plan: %s on %d %s GPU(s), %d per node\n"
      "# predicted: %.4g GiB per GPU (reserve included), %.1f ms per step, %.1f%% MFU\n"
      "# run on %d ranks (dp %d x tp %d x cp %d x pp %d)\n%s",
      l.Name(), m.gpus, m.gpu, m.gpus_per_node,
      static_cast<double>(l.memory.total + l.reserve) / 1073741824.0, l.time.total() * 1e3,
      l.mfu * 100, l.world(), l.degrees.dp, l.degrees.tp, l.cp, l.degrees.pp,
      JobConfigToText(WithLayout(config, l)));
}

}  // namespace loom
