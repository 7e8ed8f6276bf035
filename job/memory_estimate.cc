#include "job/memory_estimate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "job/config.h"
#include "model/gpt_params.h"
#include "parallel/adamw.h"
#include "parallel/pipeline_simulator.h"
#include "runtime/status.h"

namespace loom {
namespace {

int64_t Saturate(double bytes) {
  constexpr double kMax = static_cast<double>(std::numeric_limits<int64_t>::max());
  if (!(bytes < kMax)) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::ceil(bytes));
}

std::string Bytes(int64_t b) {
  const double v = static_cast<double>(b);
  if (v >= 1024.0 * 1024 * 1024 * 1024) return absl::StrFormat("%.2f TiB", v / (1ull << 40));
  if (v >= 1024.0 * 1024 * 1024) return absl::StrFormat("%.2f GiB", v / (1ull << 30));
  if (v >= 1024.0 * 1024) return absl::StrFormat("%.1f MiB", v / (1ull << 20));
  return absl::StrFormat("%.1f KiB", v / 1024.0);
}

}  // namespace

absl::StatusOr<std::vector<MemoryEstimate>> EstimateMemoryPerStage(const JobLayout& l) {
  const int64_t dt = l.bf16 ? 2 : 4;
  const DType dtype = l.bf16 ? DType::kBF16 : DType::kF32;
  // Micro-batch chunks each stage holds at once under the job's schedule (the simulator's count;
  // 1 without pipeline stages).
  LOOM_ASSIGN_OR_RETURN(PipelineBubble schedule,
                        SchedulePipelineBubble(l.schedule, l.pipeline_shape()));
  // ZeRO-1 shards over every replica of the parameters: dp x cp.
  const double shard = l.distributed_optimizer ? 1.0 / (l.dp * l.cp) : 1.0;
  std::vector<MemoryEstimate> stages;
  for (int s = 0; s < l.pp; ++s) {
    const GptStage stage = l.pp > 1 ? PipelineStageOf(l.pp, s, l.chunk_layers) : GptStage{};
    // Parameters: the table the model builds for this stage (tensor rank 0: every rank of a
    // stage holds the same count).
    LOOM_ASSIGN_OR_RETURN(ParamTable table, GptParamTable(l.model, l.tp, 0, stage));
    // Activations: the model's own allocation code, run without allocating.
    // ZERO_BUBBLE: a slot stays taken until its W pass; what W reads lives in the slot itself
    // (GptModel::ChunkBackwardInput), except the tensors recomputation rebuilt, which the slot's
    // weight-gradient buffers hold (none without recomputation).
    const bool split = l.schedule == PipelineScheduleKind::kZeroBubble;
    LOOM_ASSIGN_OR_RETURN(
        GptModel::ActivationFootprint acts,
        GptModel::MeasureActivations(l.model, l.tp, l.sequence_parallel, stage, dtype, l.recompute,
                                     l.micro_batch_size, l.seq_len_per_cp_rank, l.cp, split));
    double slot = 0;
    for (int64_t b : acts.slot) slot += static_cast<double>(b);
    slot /= std::max<size_t>(1, acts.slot.size());  // a chunk's slot (chunks split layers evenly)
    double w_slot = 0;  // the part of a slot that is weight-gradient buffers
    if (split) {
      LOOM_ASSIGN_OR_RETURN(GptModel::ActivationFootprint plain,
                            GptModel::MeasureActivations(l.model, l.tp, l.sequence_parallel, stage,
                                                         dtype, l.recompute, l.micro_batch_size,
                                                         l.seq_len_per_cp_rank, l.cp));
      double plain_slot = 0;
      for (int64_t b : plain.slot) plain_slot += static_cast<double>(b);
      w_slot = slot - plain_slot / std::max<size_t>(1, plain.slot.size());
    }
    const int in_flight = l.pp > 1 ? schedule.in_flight[s] : 1;
    const double params = static_cast<double>(table.total());
    MemoryEstimate m;
    m.stage = s;
    m.micro_batches_in_flight = in_flight;
    m.parameters = table.total();
    m.weights = Saturate(params * dt);
    m.gradients = Saturate(params * kGradientBytesPerParam);
    m.master_weights = l.bf16 ? Saturate(params * kMasterWeightBytesPerParam * shard) : 0;
    m.optimizer_moments = Saturate(params * kAdamWMomentBytesPerParam * shard);
    m.activations = Saturate(static_cast<double>(acts.scratch) + in_flight * slot);
    m.weight_grad_buffers = Saturate(in_flight * w_slot);
    m.total = Saturate(static_cast<double>(m.weights) + m.gradients + m.master_weights +
                       m.optimizer_moments + m.activations);
    stages.push_back(m);
  }
  return stages;
}

absl::StatusOr<MemoryEstimate> EstimateMemoryPerRank(const JobLayout& l) {
  LOOM_ASSIGN_OR_RETURN(std::vector<MemoryEstimate> stages, EstimateMemoryPerStage(l));
  MemoryEstimate best = stages[0];
  for (const MemoryEstimate& m : stages) {
    if (m.total > best.total) best = m;
  }
  return best;
}

absl::StatusOr<MemoryEstimate> EstimateMemoryPerRank(const JobConfig& config,
                                                     const LayoutDegrees& d) {
  JobConfig job = config;
  ParallelConfig* p = job.mutable_parallel();
  p->set_dp(d.dp);
  p->set_tp(d.tp);
  p->set_pp(d.pp);
  p->set_virtual_stages(d.virtual_stages);
  if (d.virtual_stages > 1) p->set_schedule(ParallelConfig::INTERLEAVED);
  p->set_recompute(d.recompute == Recompute::kFull        ? ParallelConfig::FULL
                   : d.recompute == Recompute::kSelective ? ParallelConfig::SELECTIVE
                                                          : ParallelConfig::NONE);
  LOOM_ASSIGN_OR_RETURN(JobLayout layout, JobLayout::Create(job, d.dp * d.tp * d.pp * p->cp()));
  return EstimateMemoryPerRank(layout);
}

std::string FormatMemoryEstimate(const MemoryEstimate& m, const std::string& prefix) {
  std::string out = absl::StrCat(prefix, "memory per rank (pipeline stage ", m.stage, ", ",
                                 m.parameters, " parameters, ", m.micro_batches_in_flight,
                                 " micro-batch(es) of activations in flight):\n");
  auto line = [&](const char* what, int64_t bytes) {
    absl::StrAppend(&out, prefix, "  ", what, Bytes(bytes), "\n");
  };
  line("weights             ", m.weights);
  line("gradients           ", m.gradients);
  if (m.master_weights > 0) line("fp32 master weights ", m.master_weights);
  line("AdamW moments       ", m.optimizer_moments);
  line("activations         ", m.activations);
  if (m.weight_grad_buffers > 0) line("  of which W buffers ", m.weight_grad_buffers);
  absl::StrAppend(&out, prefix, "  total               ", Bytes(m.total), " (", m.total,
                  " bytes)\n");
  return out;
}

}  // namespace loom
