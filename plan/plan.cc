#include "plan/plan.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "job/config.h"
#include "job/config_problems.h"
#include "job/job_check.h"
#include "model/gpt_config.h"
#include "parallel/pipeline_simulator.h"
#include "plan/stage_split.h"

namespace loom {
namespace {

std::vector<int> Divisors(int64_t n) {
  std::vector<int> out;
  for (int64_t d = 1; d * d <= n; ++d) {
    if (n % d == 0) {
      out.push_back(static_cast<int>(d));
      if (d * d != n) out.push_back(static_cast<int>(n / d));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The schedule's bubble as time added to a stage's busy time, from the pipeline simulator (the
// one home of that figure for every schedule, ZERO_BUBBLE's W actions included: with B = W it
// finds (p-1)(F+B-W) of idle per stage against 1F1B's (p-1)(F+B+W), a third).
double BubbleOverhead(const JobLayout& layout) {
  auto bubble = SchedulePipelineBubble(layout.schedule, layout.pipeline_shape());
  return bubble.ok() ? bubble->overhead : 0;
}

// What a GPU keeps back beside the estimate: the ops' workspaces and one NCCL communicator per
// device group of more than one rank (job/job_check.h GpuMemoryReserve: tp, dp, pp, the
// embedding pair and, with cp > 1, the cp ring and dp x cp), the same figure `loom train`'s
// check keeps back.
int64_t PlanGpuReserve(const PlannedLayout& l) {
  return GpuMemoryReserve(l.degrees.tp, l.degrees.dp, l.degrees.pp, l.cp);
}

}  // namespace

const char* PlanScheduleName(PlanSchedule s) {
  switch (s) {
    case PlanSchedule::kOneFOneB:
      return "1f1b";
    case PlanSchedule::kInterleaved:
      return "interleaved";
    case PlanSchedule::kZeroBubble:
      return "zb";
  }
  return "?";
}

PlanMachine MachineFromPreset(const GpuPreset& p, int gpus) {
  PlanMachine m;
  m.gpus = gpus;
  m.gpu = p.name;
  m.memory_gib = p.memory_gib;
  m.peak_tflops = p.peak_tflops;
  m.efficiency = p.efficiency;
  m.efficiency_source = p.efficiency_source;
  m.intra_node_gbps = p.intra_node_gbps;
  m.inter_node_gbps = p.inter_node_gbps;
  m.gpus_per_node = p.gpus_per_node;
  return m;
}

std::string PlannedLayout::Name() const {
  return absl::StrCat("dp", degrees.dp, " tp", degrees.tp, cp > 1 ? absl::StrCat(" cp", cp) : "",
                      " pp", degrees.pp, " v", degrees.virtual_stages, " mb", micro_batch, " ",
                      RecomputeName(degrees.recompute), distributed_optimizer ? " zero1" : "",
                      schedule == PlanSchedule::kZeroBubble ? " zb" : "");
}

JobConfig WithLayout(const JobConfig& config, const PlannedLayout& l) {
  JobConfig job = config;
  ParallelConfig* p = job.mutable_parallel();
  p->set_tp(l.degrees.tp);
  p->set_pp(l.degrees.pp);
  p->set_dp(l.degrees.dp);
  p->set_virtual_stages(l.degrees.virtual_stages);
  p->clear_stage_layers();
  if (l.uneven) {
    for (int n : l.chunk_layers) p->add_stage_layers(n);
  }
  p->set_micro_batch_size(l.micro_batch);
  p->set_sequence_parallel(l.sequence_parallel);
  p->set_distributed_optimizer(l.distributed_optimizer);
  p->set_recompute(l.degrees.recompute == Recompute::kFull        ? ParallelConfig::FULL
                   : l.degrees.recompute == Recompute::kSelective ? ParallelConfig::SELECTIVE
                                                                  : ParallelConfig::NONE);
  // The one place cp and the schedule are written: the trainer runs every schedule the planner
  // proposes (1F1B, INTERLEAVED with v > 1, ZERO_BUBBLE) and parallel.cp.
  p->set_cp(l.cp);
  p->set_schedule(l.schedule == PlanSchedule::kInterleaved  ? ParallelConfig::INTERLEAVED
                  : l.schedule == PlanSchedule::kZeroBubble ? ParallelConfig::ZERO_BUBBLE
                                                            : ParallelConfig::ONE_F_ONE_B);
  return job;
}

absl::StatusOr<std::vector<PlannedLayout>> PlanLayouts(const JobConfig& config_in,
                                                       const PlanMachine& m,
                                                       const PlanSearch& search) {
  auto positive = [](const char* flag, double v) -> absl::Status {
    if (v > 0 && std::isfinite(v)) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(flag, " must be a positive number, got ", v));
  };
  if (m.gpus < 1) return absl::InvalidArgumentError("--gpus must be at least 1");
  if (m.gpus_per_node < 1) return absl::InvalidArgumentError("--gpus-per-node must be at least 1");
  for (auto [flag, v] : {std::pair<const char*, double>{"--gpu-memory-gib", m.memory_gib},
                         {"--peak-tflops", m.peak_tflops},
                         {"--efficiency", m.efficiency},
                         {"--intra-node-gbps", m.intra_node_gbps},
                         {"--inter-node-gbps", m.inter_node_gbps}}) {
    absl::Status s = positive(flag, v);
    if (!s.ok()) return s;
  }
  if (m.efficiency > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--efficiency (achievable / peak) must be at most 1, got ", m.efficiency,
                     " (--gpu-tflops above --peak-tflops?)"));
  }
  JobConfig config = config_in;
  ApplyDefaults(&config);
  config.mutable_parallel()->clear_stage_layers();  // the planner chooses the split
  const bool cpu = config.runtime().backend() == RuntimeConfig::CPU;
  const double capacity = m.memory_gib * 1073741824.0;
  const int64_t global = config.parallel().global_batch_size();
  const int layers = config.model().layers();
  const int seq_len = config.data().seq_len();
  const double fpt =
      TrainingFlopsPerToken(GptConfigFromJob(config), ParameterCount(config.model()), seq_len);

  std::vector<PlannedLayout> out;
  for (int tp : Divisors(m.gpus)) {
    if (tp > m.gpus_per_node) continue;  // tensor parallelism needs the intra-node links
    for (int cp : Divisors(m.gpus / tp)) {
      // Which cp the sequence allows (2 * cp chunks; sequence parallelism's rows) is
      // LayoutProblems' to say, like every other rule.
      if (cp > search.max_cp) continue;
      for (int pp : Divisors(m.gpus / (tp * cp))) {
        if (pp > layers) break;
        if (layers % pp != 0 && !search.uneven_stages) continue;
        const int dp = m.gpus / (tp * cp * pp);
        std::vector<int> vss = {1};
        for (int v = 2; pp > 1 && v * pp <= layers; ++v) {
          if (layers % (v * pp) == 0 || (search.uneven_stages && v <= search.max_virtual_stages))
            vss.push_back(v);
        }
        for (int vs : vss) {
          std::vector<PlanSchedule> schedules;
          if (vs > 1) {
            schedules = {PlanSchedule::kInterleaved};
          } else {
            schedules = {PlanSchedule::kOneFOneB};
            if (pp > 1 && search.zero_bubble) schedules.push_back(PlanSchedule::kZeroBubble);
          }
          const std::vector<int> split = PlannerStageLayers(layers, pp, vs);
          if (split.empty()) continue;
          const bool uneven = layers % (pp * vs) != 0;
          for (PlanSchedule schedule : schedules) {
            for (int micro : Divisors(global)) {
              if (micro > search.max_micro_batch) break;
              for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
                for (bool zero : {false, true}) {
                  if (zero && dp * cp == 1) continue;  // nothing to shard
                  PlannedLayout l;
                  l.degrees = LayoutDegrees{dp, tp, pp, vs, rc};
                  l.cp = cp;
                  l.schedule = schedule;
                  l.chunk_layers = split;
                  l.uneven = uneven;
                  l.micro_batch = micro;
                  l.distributed_optimizer = zero;
                  l.sequence_parallel = tp > 1;
                  const JobConfig job = WithLayout(config, l);
                  const int world = l.world();  // dp * tp * pp * cp: RankGrid's rule
                  if (!LayoutProblems(job, world).empty()) continue;
                  const JobLayout layout = JobLayout::FromValid(job, world);
                  auto memory = EstimateMemoryPerRank(layout);
                  if (!memory.ok()) return memory.status();
                  l.micro_batches = layout.grad_accum_steps;
                  l.memory = *memory;
                  l.reserve = cpu ? kCpuMemoryReserve : kCudaContextReserve + PlanGpuReserve(l);
                  l.fits = static_cast<double>(l.memory.total + l.reserve) <= capacity;
                  l.time = PredictTimes(job, m, l, pp > 1 ? BubbleOverhead(layout) : 0);
                  const double tokens = static_cast<double>(global) * seq_len;
                  l.tokens_per_s = tokens / l.time.total();
                  l.mfu = l.tokens_per_s * fpt / (m.gpus * m.peak_tflops * 1e12);
                  out.push_back(std::move(l));
                }
              }
            }
          }
        }
      }
    }
  }
  if (out.empty()) {
    JobConfig plain = config;
    plain.mutable_parallel()->set_tp(1);
    plain.mutable_parallel()->set_pp(1);
    plain.mutable_parallel()->set_cp(1);
    plain.mutable_parallel()->set_dp(0);
    return absl::InvalidArgumentError(absl::StrCat(
        "no valid layout for ", m.gpus, " GPUs; the data-parallel layout's problems:\n  - ",
        absl::StrJoin(LayoutProblems(plain, m.gpus), "\n  - ")));
  }
  // Equal times (a ring or a reduction wholly hidden) go to the layout with fewer kinds of
  // parallelism, then the smaller memory.
  auto kinds = [](const PlannedLayout& l) {
    return (l.cp > 1) + (l.degrees.pp > 1) + (l.degrees.tp > 1) + (l.degrees.virtual_stages > 1);
  };
  std::stable_sort(out.begin(), out.end(), [&](const PlannedLayout& a, const PlannedLayout& b) {
    if (a.fits != b.fits) return a.fits;
    if (a.fits) {
      if (a.time.total() != b.time.total()) return a.time.total() < b.time.total();
      if (kinds(a) != kinds(b)) return kinds(a) < kinds(b);
      return a.memory.total < b.memory.total;
    }
    return a.memory.total < b.memory.total;
  });
  return out;
}

}  // namespace loom
