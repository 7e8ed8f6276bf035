// The planner's step-time model (plan/plan.h has the summary, docs/planner.md the reasoning).
#include <algorithm>
#include <cmath>

#include "job/config.h"
#include "model/gpt_config.h"
#include "plan/plan.h"

namespace loom {
namespace {

double BytesPerSecond(double gbps) { return gbps * 1e9 / 8.0; }

// Ring all-reduce of `bytes` over `n` ranks (a reduce-scatter or an all-gather is half of it).
double AllReduceSeconds(double bytes, int n, double bytes_per_s) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) / n * bytes / bytes_per_s;
}

// Flops per token of one transformer layer in training (forward + backward): 6 per parameter
// plus loom's attention term 6*C*T (model/gpt_config.h TrainingFlopsPerToken), the layer's
// parameters counted as the difference between the model and the model with one layer less.
double LayerFlopsPerToken(const ModelConfig& model, int seq_len) {
  ModelConfig fewer = model;
  ModelConfig more = model;
  fewer.set_layers(std::max(1, model.layers() - 1));
  more.set_layers(fewer.layers() + 1);
  const double per_layer =
      static_cast<double>(ParameterCount(more)) - static_cast<double>(ParameterCount(fewer));
  return 6.0 * per_layer + 6.0 * model.hidden() * static_cast<double>(seq_len);
}

}  // namespace

PlanTimes PredictTimes(const JobConfig& job, const PlanMachine& m, const PlannedLayout& l,
                       double bubble_overhead) {
  const GptConfig g = GptConfigFromJob(job);
  const LayoutDegrees& d = l.degrees;
  const int cp = l.cp;
  const double dt = job.precision() == JobConfig::BF16 ? 2 : 4;
  const double C = g.hidden;
  const double T = static_cast<double>(job.data().seq_len()) * cp;         // the whole sequence
  const double rank_tokens = static_cast<double>(l.micro_batch) * T / cp;  // per micro-batch
  const double achievable = m.achievable_tflops() * 1e12;
  const double intra = BytesPerSecond(m.intra_node_gbps), inter = BytesPerSecond(m.inter_node_gbps);
  ModelConfig whole = job.model();
  const double total_fpt = TrainingFlopsPerToken(g, ParameterCount(whole), static_cast<int>(T));
  const double layer_fpt_model = LayerFlopsPerToken(whole, static_cast<int>(T));
  // What the layers do not count: the head's vocabulary projection (6*C*V) on the last stage,
  // the embedding tables' share of 6N (an untied wte, GPT-2's wpe) on the first, so the stages
  // add up to the model flops MFU counts (one GPU runs at exactly peak x efficiency).
  const double rest_fpt = std::max(0.0, total_fpt - g.layers * layer_fpt_model);
  const double head_fpt = std::min(rest_fpt, 6.0 * C * static_cast<double>(g.vocab));
  const double embedding_fpt = rest_fpt - head_fpt;
  double layer_fpt = layer_fpt_model;
  if (d.recompute == Recompute::kFull) layer_fpt *= 4.0 / 3.0;
  if (d.recompute == Recompute::kSelective) layer_fpt += 2.0 * C * T;

  // Per micro-batch, per stage: compute, tensor-parallel collectives, the exposed ring.
  const double act_bytes = rank_tokens * C * dt;  // one micro-batch's B x T/cp x C
  const double tp_collectives = d.recompute == Recompute::kFull ? 6 : 4;
  const double tp_per_layer = tp_collectives * AllReduceSeconds(act_bytes, d.tp, intra);
  double cp_per_layer = 0;
  if (cp > 1) {
    // K and V of this rank's T/cp tokens (its kv heads), passed cp - 1 times around the ring;
    // each hop runs beside the attention of the block in hand (1/cp of the layer's attention).
    const double kv_dim = static_cast<double>(g.kv_heads) * g.head_dim() / d.tp;
    const double block_bytes = 2 * rank_tokens * kv_dim * dt;
    const double ring_bw = d.tp * cp > m.gpus_per_node ? inter : intra;
    const double hop = block_bytes / ring_bw;
    // Forward attention flops of this rank's tokens against the whole sequence, per hop.
    const double attn_fwd_hop = 2.0 * C * T * rank_tokens / d.tp / achievable / cp;
    // Forward: K/V hops; backward: K/V again and dK/dV back, beside twice the compute.
    const double passes = d.recompute == Recompute::kFull ? 2 : 1;  // forwards run
    cp_per_layer = (cp - 1) * (passes * std::max(0.0, hop - attn_fwd_hop) +
                               std::max(0.0, 2 * hop - 2 * attn_fwd_hop));
  }
  const int chunks = static_cast<int>(l.chunk_layers.size());
  double worst = -1, stage_compute = 0, stage_tp = 0, stage_cp = 0;
  for (int s = 0; s < d.pp; ++s) {
    double layers = 0;
    for (int c = s; c < chunks; c += d.pp) layers += l.chunk_layers[c];
    const double flops =
        layers * layer_fpt + (s == d.pp - 1 ? head_fpt : 0) + (s == 0 ? embedding_fpt : 0);
    const double compute = flops * rank_tokens / d.tp / achievable;
    const double tp = layers * tp_per_layer, ring = layers * cp_per_layer;
    if (compute + tp + ring > worst) {
      worst = compute + tp + ring;
      stage_compute = compute;
      stage_tp = tp;
      stage_cp = ring;
    }
  }
  const double mb = static_cast<double>(l.micro_batches);
  PlanTimes t;
  t.compute = mb * stage_compute;
  t.tp_comm = mb * stage_tp;
  t.cp_comm = mb * stage_cp;
  t.bubble = (t.compute + t.tp_comm + t.cp_comm) * bubble_overhead;

  // Gradient reduction over the dp * cp ranks holding the same parameters, in buckets, beside
  // the last micro-batch's backward (GradReducer); the last bucket starts when backward ends.
  const int reducers = d.dp * cp;
  if (reducers > 1) {
    const bool spans_nodes = d.tp * cp * d.dp > m.gpus_per_node;
    const double bw = spans_nodes ? inter : intra;
    const double params = static_cast<double>(l.memory.parameters);
    const double grad_bytes = params * 4;  // fp32 gradients
    const double bucket = std::min(grad_bytes, job.parallel().grad_bucket_mb() * 1048576.0);
    const double scale = l.distributed_optimizer ? 0.5 : 1.0;  // reduce-scatter: half
    const double reduction = scale * AllReduceSeconds(grad_bytes, reducers, bw);
    const double last_bucket = scale * AllReduceSeconds(bucket, reducers, bw);
    const double backward_share = d.recompute == Recompute::kFull ? 3.0 / 4.0 : 2.0 / 3.0;
    const double window = backward_share * worst;
    const double exposed = std::max(last_bucket, reduction - window);
    t.dp_hidden = reduction - exposed;
    t.dp_comm = exposed;
    // ZeRO-1: the updated weights are all-gathered (compute dtype) after the optimizer step,
    // before the next forward: nothing to overlap with.
    if (l.distributed_optimizer) t.dp_comm += 0.5 * AllReduceSeconds(params * dt, reducers, bw);
  }
  if (d.pp > 1) {
    // Each exchange is a batched send/recv the stage waits for (PipelineRunner): the transfer
    // of one micro-batch's boundary activation (or its gradient), this rank's rows with
    // sequence parallelism.
    const bool pp_spans_nodes = d.tp * cp * d.dp * d.pp > m.gpus_per_node;
    const double p2p =
        (l.sequence_parallel ? act_bytes / d.tp : act_bytes) / (pp_spans_nodes ? inter : intra);
    t.pp_comm = 2 * mb * d.virtual_stages * p2p;
  }
  return t;
}

}  // namespace loom
