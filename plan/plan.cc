#include "plan/plan.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "job/config.h"
#include "job/job_check.h"
#include "model/gpt_config.h"
#include "parallel/pipeline_simulator.h"

namespace loom {
namespace {

std::vector<int> Divisors(int64_t n) {
  std::vector<int> out;
  for (int64_t d = 1; d <= n; ++d) {
    if (n % d == 0) out.push_back(static_cast<int>(d));
  }
  return out;
}

double BytesPerSecond(double gbps) { return gbps * 1e9 / 8.0; }

// Ring all-reduce of `bytes` over `n` ranks.
double AllReduceSeconds(double bytes, int n, double bytes_per_s) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) / n * bytes / bytes_per_s;
}

// The schedule's bubble as time added to a stage's compute, from the pipeline simulator (one
// home for that figure), memoised over the layouts the planner walks.
double BubbleOverhead(const JobLayout& layout) {
  static std::map<std::tuple<int, int, int, int>, double> cache;
  const PipelineShape shape = layout.pipeline_shape();
  const auto key = std::make_tuple(static_cast<int>(layout.schedule), shape.stages,
                                   shape.micro_batches, shape.virtual_stages);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto bubble = SchedulePipelineBubble(layout.schedule, shape);
  const double overhead = bubble.ok() ? bubble->overhead : 0;
  cache.emplace(key, overhead);
  return overhead;
}

PlanTimes PredictTimes(const JobLayout& layout, const PlanMachine& m, const PlannedLayout& l) {
  const JobConfig& job = layout.config;
  const GptConfig g = GptConfigFromJob(job);
  const LayoutDegrees& d = l.degrees;
  const double dt = job.precision() == JobConfig::BF16 ? 2 : 4;
  const double T = job.data().seq_len(), C = g.hidden, L = g.layers;
  const double tokens = static_cast<double>(job.parallel().global_batch_size()) * T;
  const double flops_per_token =
      TrainingFlopsPerToken(g, ParameterCount(job.model()), job.data().seq_len());
  double flops = tokens * flops_per_token;
  if (d.recompute == Recompute::kFull) flops *= 4.0 / 3.0;
  if (d.recompute == Recompute::kSelective) flops += tokens * 2.0 * L * C * T;
  const double intra = BytesPerSecond(m.intra_node_gbps), inter = BytesPerSecond(m.inter_node_gbps);
  PlanTimes t;
  t.compute = flops / (m.gpus * m.tflops * 1e12);
  const double mb = static_cast<double>(l.micro_batches);
  const double act_bytes = l.micro_batch * T * C * dt;  // one micro-batch's B x T x C
  const double layers_per_stage = L / d.pp;
  const double tp_collectives = d.recompute == Recompute::kFull ? 6 : 4;
  t.tp_comm = layers_per_stage * mb * tp_collectives * AllReduceSeconds(act_bytes, d.tp, intra);
  const bool dp_spans_nodes = d.tp * d.dp > m.gpus_per_node;
  const double grad_bytes = static_cast<double>(l.memory.parameters) * 4;
  const double dp_bw = dp_spans_nodes ? inter : intra;
  if (l.distributed_optimizer) {
    // Reduce-scatter of fp32 gradients, all-gather of the compute-dtype weights.
    t.dp_comm = AllReduceSeconds(grad_bytes, d.dp, dp_bw) / 2 +
                AllReduceSeconds(static_cast<double>(l.memory.parameters) * dt, d.dp, dp_bw) / 2;
  } else {
    t.dp_comm = AllReduceSeconds(grad_bytes, d.dp, dp_bw);
  }
  if (d.pp > 1) {
    const bool pp_spans_nodes = d.tp * d.dp * d.pp > m.gpus_per_node;
    const double p2p =
        (l.sequence_parallel ? act_bytes / d.tp : act_bytes) / (pp_spans_nodes ? inter : intra);
    t.pp_comm = 2 * mb * d.virtual_stages * p2p;
    t.bubble = t.compute * BubbleOverhead(layout);
  }
  return t;
}

}  // namespace

std::string PlannedLayout::Name() const {
  return absl::StrCat("dp", degrees.dp, " tp", degrees.tp, " pp", degrees.pp, " v",
                      degrees.virtual_stages, " mb", micro_batch, " ",
                      RecomputeName(degrees.recompute), distributed_optimizer ? " zero1" : "");
}

JobConfig WithLayout(const JobConfig& config, const PlannedLayout& l) {
  JobConfig job = config;
  ParallelConfig* p = job.mutable_parallel();
  p->set_tp(l.degrees.tp);
  p->set_pp(l.degrees.pp);
  p->set_dp(l.degrees.dp);
  p->set_virtual_stages(l.degrees.virtual_stages);
  p->set_schedule(l.degrees.virtual_stages > 1 ? ParallelConfig::INTERLEAVED
                                               : ParallelConfig::ONE_F_ONE_B);
  p->set_micro_batch_size(l.micro_batch);
  p->set_sequence_parallel(l.sequence_parallel);
  p->set_distributed_optimizer(l.distributed_optimizer);
  p->set_recompute(l.degrees.recompute == Recompute::kFull        ? ParallelConfig::FULL
                   : l.degrees.recompute == Recompute::kSelective ? ParallelConfig::SELECTIVE
                                                                  : ParallelConfig::NONE);
  return job;
}

absl::StatusOr<std::vector<PlannedLayout>> PlanLayouts(const JobConfig& config_in,
                                                       const PlanMachine& m) {
  auto positive = [](const char* flag, double v) -> absl::Status {
    if (v > 0 && std::isfinite(v)) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(flag, " must be a positive number, got ", v));
  };
  if (m.gpus < 1) return absl::InvalidArgumentError("--gpus must be at least 1");
  if (m.gpus_per_node < 1) return absl::InvalidArgumentError("--gpus-per-node must be at least 1");
  for (auto [flag, v] : {std::pair<const char*, double>{"--gpu-memory-gib", m.memory_gib},
                         {"--gpu-tflops", m.tflops},
                         {"--intra-node-gbps", m.intra_node_gbps},
                         {"--inter-node-gbps", m.inter_node_gbps}}) {
    absl::Status s = positive(flag, v);
    if (!s.ok()) return s;
  }
  JobConfig config = config_in;
  ApplyDefaults(&config);
  config.mutable_parallel()->clear_stage_layers();  // the planner splits layers evenly
  const bool cpu = config.runtime().backend() == RuntimeConfig::CPU;
  const double capacity = m.memory_gib * 1073741824.0;
  const int64_t global = config.parallel().global_batch_size();
  const int layers = config.model().layers();

  std::vector<PlannedLayout> out;
  for (int tp : Divisors(m.gpus)) {
    if (tp > m.gpus_per_node) continue;  // tensor parallelism needs the intra-node links
    for (int pp : Divisors(m.gpus / tp)) {
      const int dp = m.gpus / (tp * pp);
      std::vector<int> vss = {1};
      if (pp > 1) {
        for (int v = 2; v * pp <= layers; ++v) {
          if (layers % (v * pp) == 0) vss.push_back(v);
        }
      }
      for (int vs : vss) {
        for (int micro : Divisors(global)) {
          for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
            for (bool zero : {false, true}) {
              if (zero && dp == 1) continue;  // nothing to shard
              PlannedLayout l;
              l.degrees = LayoutDegrees{dp, tp, pp, vs, rc};
              l.micro_batch = micro;
              l.distributed_optimizer = zero;
              l.sequence_parallel = tp > 1;
              auto layout = JobLayout::Create(WithLayout(config, l), m.gpus);
              if (!layout.ok()) continue;
              const JobConfig& job = layout->config;
              l.micro_batches = layout->grad_accum_steps;
              auto memory = EstimateMemoryPerRank(*layout);
              if (!memory.ok()) return memory.status();
              l.memory = *memory;
              l.reserve =
                  cpu ? kCpuMemoryReserve : kCudaContextReserve + GpuMemoryReserve(tp, dp, pp);
              l.fits = static_cast<double>(l.memory.total + l.reserve) <= capacity;
              l.time = PredictTimes(*layout, m, l);
              const double tokens = static_cast<double>(global) * config.data().seq_len();
              l.tokens_per_s = tokens / l.time.total();
              const double fpt = TrainingFlopsPerToken(
                  GptConfigFromJob(job), ParameterCount(job.model()), job.data().seq_len());
              l.mfu = l.tokens_per_s * fpt / (m.gpus * m.tflops * 1e12);
              out.push_back(l);
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
        absl::StrJoin(ConfigProblems(plain, m.gpus), "\n  - ")));
  }
  std::stable_sort(out.begin(), out.end(), [](const PlannedLayout& a, const PlannedLayout& b) {
    if (a.fits != b.fits) return a.fits;
    if (a.fits) {
      if (a.time.total() != b.time.total()) return a.time.total() < b.time.total();
      return a.memory.total < b.memory.total;
    }
    return a.memory.total < b.memory.total;
  });
  return out;
}

std::string FormatPlanTable(const std::vector<PlannedLayout>& layouts, int rows) {
  auto gib = [](double b) { return b / 1073741824.0; };
  auto ms = [](double s) { return s * 1e3; };
  std::string out = absl::StrFormat(
      "%4s %4s %3s %3s %2s %5s %-9s %-5s | %9s %9s %9s | %9s %8s %8s %8s %8s %8s | %9s %6s\n",
      "rank", "dp", "tp", "pp", "v", "micro", "recompute", "zero1", "mem GiB", "state", "acts",
      "step ms", "compute", "tp", "dp", "pp", "bubble", "tok/s", "MFU");
  int shown = 0;
  for (const PlannedLayout& l : layouts) {
    if (shown++ >= rows) break;
    const MemoryEstimate& e = l.memory;
    const double state =
        static_cast<double>(e.weights + e.gradients + e.master_weights + e.optimizer_moments);
    absl::StrAppendFormat(
        &out,
        "%4s %4d %3d %3d %2d %5d %-9s %-5s | %9.3f %9.3f %9.3f | %9.2f %8.2f %8.2f %8.2f %8.2f "
        "%8.2f | %9s %5.1f%%\n",
        l.fits ? absl::StrCat(shown) : std::string("-"), l.degrees.dp, l.degrees.tp, l.degrees.pp,
        l.degrees.virtual_stages, l.micro_batch, RecomputeName(l.degrees.recompute),
        l.distributed_optimizer ? "yes" : "no", gib(static_cast<double>(e.total + l.reserve)),
        gib(state), gib(static_cast<double>(e.activations)), ms(l.time.total()), ms(l.time.compute),
        ms(l.time.tp_comm), ms(l.time.dp_comm), ms(l.time.pp_comm), ms(l.time.bubble),
        absl::StrFormat("%.4g", l.tokens_per_s), l.mfu * 100);
  }
  return out;
}

std::string FormatPlanCsv(const std::vector<PlannedLayout>& layouts) {
  std::string out =
      "rank,dp,tp,pp,virtual_stages,micro_batch,recompute,distributed_optimizer,fits,"
      "memory_bytes,state_bytes,activation_bytes,step_s,compute_s,tp_comm_s,dp_comm_s,pp_comm_s,"
      "bubble_s,tokens_per_s,mfu\n";
  int rank = 0;
  for (const PlannedLayout& l : layouts) {
    const MemoryEstimate& e = l.memory;
    absl::StrAppendFormat(
        &out, "%d,%d,%d,%d,%d,%d,%s,%d,%d,%d,%d,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4f\n",
        l.fits ? ++rank : 0, l.degrees.dp, l.degrees.tp, l.degrees.pp, l.degrees.virtual_stages,
        l.micro_batch, RecomputeName(l.degrees.recompute),
        static_cast<int>(l.distributed_optimizer), static_cast<int>(l.fits), e.total,
        e.weights + e.gradients + e.master_weights + e.optimizer_moments, e.activations,
        l.time.total(), l.time.compute, l.time.tp_comm, l.time.dp_comm, l.time.pp_comm,
        l.time.bubble, l.tokens_per_s, l.mfu);
  }
  return out;
}

}  // namespace loom
