#include "plan/plan.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

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

// The schedule's bubble as time added to a stage's busy time, from the pipeline simulator (one
// home for that figure; it keeps what it simulated).
double BubbleOverhead(const JobLayout& layout, PlanSchedule schedule) {
  auto bubble = SchedulePipelineBubble(layout.schedule, layout.pipeline_shape());
  double overhead = bubble.ok() ? bubble->overhead : 0;
  // ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): splitting backward into
  // B and W and filling 1F1B's idle slots with deferred W passes leaves (p-1)(F+B-W) of 1F1B's
  // (p-1)(F+B+W): a third with F = B = W. ISSUE-21 MERGE: once the simulator knows
  // ZERO_BUBBLE, take its overhead from SchedulePipelineBubble like the others.
  if (schedule == PlanSchedule::kZeroBubble) overhead /= 3;
  return overhead;
}

// The per-rank job the memory estimate and the time model price: the layout's parallel fields,
// and with context parallelism the sequence each rank holds (data.seq_len / cp), which is what
// cp does to every activation (issue 21: activations per rank fall about 1/cp).
JobConfig PerRankJob(const JobConfig& config, const PlannedLayout& l) {
  JobConfig job = WithLayout(config, l);
  if (l.cp > 1) job.mutable_data()->set_seq_len(config.data().seq_len() / l.cp);
  return job;
}

// Bytes the planner adds to the estimate for what the trainer does not hold yet (issue 21):
// the ring's K/V (and dK/dV) double buffers with cp, and ZERO_BUBBLE's W-pass buffers: the
// output gradients of each linear layer of the micro-batches whose W pass is deferred (at most
// min(p - 1, m) on the first stage; the inputs W needs are activations 1F1B holds anyway).
// ISSUE-21 MERGE: drop each term once EstimateMemoryPerRank counts it.
int64_t Issue21Bytes(const JobLayout& job, const PlannedLayout& l) {
  const GptConfig& g = job.model;
  const double dt = job.bf16 ? 2 : 4;
  const double rows = static_cast<double>(job.micro_batch_size) * job.seq_len;  // per rank
  double bytes = 0;
  if (l.cp > 1) {
    const double kv = 2.0 * rows * g.kv_heads * g.head_dim() / job.tp * dt;
    bytes += 4 * kv;  // K/V in hand and in transit, dK/dV in hand and in transit
  }
  if (l.schedule == PlanSchedule::kZeroBubble) {
    const double mlp = g.is_llama() ? 2.0 * g.ffn_hidden : g.ffn_hidden;
    const double per_layer = rows * (g.qkv_dim() + g.hidden + mlp + g.hidden) / job.tp * dt;
    const double deferred = std::min<double>(job.pp - 1, job.grad_accum_steps);
    bytes += deferred * l.chunk_layers.front() * per_layer;
  }
  return static_cast<int64_t>(bytes);
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
  // ISSUE-21 MERGE, the one place cp and the schedule are written: when parallel.cp and
  // ParallelConfig::ZERO_BUBBLE exist, add `p->set_cp(l.cp);` and map kZeroBubble to
  // ZERO_BUBBLE here (and give PerRankJob's caller world = dp*tp*pp*cp). Until then the job
  // written for a cp > 1 or zb layout runs as cp 1 with 1F1B; the planner prices those layouts
  // itself (PerRankJob, Issue21Bytes, BubbleOverhead).
  p->set_schedule(l.schedule == PlanSchedule::kInterleaved ? ParallelConfig::INTERLEAVED
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

  struct Priced {
    std::optional<JobLayout> layout;  // absent: the layout is not valid
    MemoryEstimate memory;
  };
  std::map<std::string, Priced> estimates;
  std::vector<PlannedLayout> out;
  for (int tp : Divisors(m.gpus)) {
    if (tp > m.gpus_per_node) continue;  // tensor parallelism needs the intra-node links
    for (int cp : Divisors(m.gpus / tp)) {
      if (cp > search.max_cp || (cp > 1 && seq_len % (2 * cp) != 0)) continue;
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
          estimates.clear();  // only the schedules of one (tp, cp, pp, v) share estimates
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
                  const JobConfig job = PerRankJob(config, l);
                  const int world = dp * tp * pp;  // the grid loom sees until parallel.cp
                  // ZERO_BUBBLE shares its per-rank job (and so its estimate) with 1F1B.
                  auto [cached, fresh] = estimates.try_emplace(job.SerializeAsString());
                  if (fresh) {
                    if (LayoutProblems(job, world).empty()) {
                      cached->second.layout = JobLayout::FromValid(job, world);
                      auto memory = EstimateMemoryPerRank(*cached->second.layout);
                      if (!memory.ok()) return memory.status();
                      cached->second.memory = *memory;
                    }
                  }
                  if (!cached->second.layout) continue;
                  const JobLayout& layout = *cached->second.layout;
                  l.micro_batches = layout.grad_accum_steps;
                  l.memory = cached->second.memory;
                  const int64_t extra = Issue21Bytes(layout, l);
                  l.memory.activations += extra;
                  l.memory.total += extra;
                  l.reserve =
                      cpu ? kCpuMemoryReserve : kCudaContextReserve + GpuMemoryReserve(tp, dp, pp);
                  l.fits = static_cast<double>(l.memory.total + l.reserve) <= capacity;
                  l.time = PredictTimes(job, m, l, pp > 1 ? BubbleOverhead(layout, schedule) : 0);
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
