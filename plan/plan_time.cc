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

// Whether a group of `span` consecutive ranks (ranks are numbered tp fastest, then cp, dp, pp:
// a cp group lies within tp*cp consecutive ranks, a dp x cp group within tp*cp*dp) crosses a
// node boundary for some group of a world of `gpus` in nodes of `per_node`.
bool SpansNodes(int span, int gpus, int per_node) {
  if (gpus <= per_node) return false;  // one node
  return span > per_node || per_node % span != 0;
}

}  // namespace

PlanTimes PredictTimes(const JobConfig& job, const PlanMachine& m, const PlannedLayout& l,
                       double bubble_overhead) {
  const GptConfig g = GptConfigFromJob(job);
  const LayoutDegrees& d = l.degrees;
  const int cp = l.cp;
  const double dt = job.precision() == JobConfig::BF16 ? 2 : 4;
  const double C = g.hidden;
  const double T = static_cast<double>(job.data().seq_len());              // the whole sequence
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
    // Ring attention (parallel/ring_attention.h): this rank's block of B x T/cp tokens travels as
    // whole qkv rows of its local heads, Q included ((NH + 2*NKV) / (2*NKV) times K and V alone).
    const double qkv_dim = static_cast<double>(g.qkv_dim()) / d.tp;
    const double hop = rank_tokens * qkv_dim * dt /
                       (SpansNodes(d.tp * cp, m.gpus, m.gpus_per_node) ? inter : intra);
    // Each hop is posted before the block in hand is computed and waited for after it; a block
    // is this rank's queries against 1/cp of the keys (the causal load is balanced over the
    // blocks), forward 2*C*T flops per token in all.
    const double block = 2.0 * C * T * rank_tokens / d.tp / achievable / cp;
    auto exposed = [](double transfer, double compute) {
      return std::max(0.0, transfer - compute);
    };
    // Forward: cp - 1 hops of K/V (twice with full recomputation: the forward runs again).
    const double forward = (cp - 1) * exposed(hop, block);
    // Backward, blocks of twice the compute: at step 0 the next K/V hop alone; at steps
    // 1 .. cp-2 a K/V hop and the previous block's dK/dV accumulator on the same link; at step
    // cp-1 the accumulator alone; then the accumulator's last hop home, with nothing beside it.
    const double backward =
        2 * exposed(hop, 2 * block) + (cp - 2) * exposed(2 * hop, 2 * block) + hop;
    const double passes = d.recompute == Recompute::kFull ? 2 : 1;
    cp_per_layer = passes * forward + backward;
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
    const double bw = SpansNodes(d.tp * cp * d.dp, m.gpus, m.gpus_per_node) ? inter : intra;
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
    const bool pp_spans_nodes = SpansNodes(d.tp * cp * d.dp * d.pp, m.gpus, m.gpus_per_node);
    const double p2p =
        (l.sequence_parallel ? act_bytes / d.tp : act_bytes) / (pp_spans_nodes ? inter : intra);
    t.pp_comm = 2 * mb * d.virtual_stages * p2p;
  }
  return t;
}

}  // namespace loom
