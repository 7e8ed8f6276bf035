#include "launcher/memory_estimate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "launcher/config.h"

namespace loom {
namespace {

int64_t Saturate(double bytes) {
  constexpr double kMax = static_cast<double>(std::numeric_limits<int64_t>::max());
  if (!(bytes < kMax)) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::ceil(bytes));
}

// Layers held by each pipeline stage (all its virtual-stage chunks together).
std::vector<double> StageLayers(const JobConfig& c, int pp, int vs) {
  std::vector<double> layers(pp, 0.0);
  const auto& p = c.parallel();
  const int64_t chunks = int64_t{pp} * vs;
  for (int64_t k = 0; k < chunks; ++k) {
    const double n = p.stage_layers_size() == chunks
                         ? p.stage_layers(static_cast<int>(k))
                         : static_cast<double>(c.model().layers()) / static_cast<double>(chunks);
    layers[k % pp] += n;
  }
  return layers;
}

std::string Bytes(int64_t b) {
  const double v = static_cast<double>(b);
  if (v >= 1024.0 * 1024 * 1024 * 1024) return absl::StrFormat("%.2f TiB", v / (1ull << 40));
  if (v >= 1024.0 * 1024 * 1024) return absl::StrFormat("%.2f GiB", v / (1ull << 30));
  if (v >= 1024.0 * 1024) return absl::StrFormat("%.1f MiB", v / (1ull << 20));
  return absl::StrFormat("%.1f KiB", v / 1024.0);
}

}  // namespace

MemoryEstimate EstimateMemoryPerRank(const JobConfig& config, const LayoutDegrees& layout) {
  const GptConfig g = GptConfigFromJob(config);
  const bool llama = g.is_llama();
  const bool bf16 = config.precision() == JobConfig::BF16;
  const int dp = std::max(1, layout.dp), tp = std::max(1, layout.tp), pp = std::max(1, layout.pp),
            vs = std::max(1, layout.virtual_stages);
  const bool sp = config.parallel().sequence_parallel() && tp > 1;
  const bool dist_opt = config.parallel().distributed_optimizer();

  const double C = g.hidden, F = g.ffn_hidden, H = g.heads,
               Vp = static_cast<double>(g.padded_vocab);
  const double qkv = (g.heads + 2.0 * g.kv_heads) * (g.heads > 0 ? g.hidden / g.heads : 0);
  const double fc_width = llama ? 2 * F : F;
  const double B = config.parallel().micro_batch_size(), T = config.data().seq_len();
  const double N = B * T;
  const double dt = bf16 ? 2 : 4, f32 = 4, i32 = 4;
  const double inner = 1.0 / tp;           // inside attention and the MLP
  const double outer = sp ? 1.0 / tp : 1;  // everything else, split only with sequence parallelism
  const double global = config.parallel().global_batch_size();
  const double micro_batches = std::max(1.0, std::floor(global / (B * dp)));

  // Parameters of one block: tensor-parallel (sharded) and replicated.
  const double block_sharded =
      llama ? C * qkv + C * C + C * 2 * F + F * C : C * qkv + qkv + C * C + C * F + F + F * C;
  const double block_replicated = llama ? 2 * C : 6 * C;
  const double block_params = block_sharded / tp + block_replicated;
  const double embedding = Vp * C / tp + (llama ? 0 : static_cast<double>(g.max_seq) * C);
  const double final_norm = llama ? C : 2 * C;
  const double head = g.tied_embeddings ? (pp > 1 ? Vp * C / tp : 0) : Vp * C / tp;

  // Activations of one layer for one micro-batch (EnsureActivations' LayerActs).
  const double layer_acts =
      inner * (N * qkv * dt + N * C * dt + B * H * T * f32 + N * fc_width * dt + N * F * dt) +
      outer * (4 * N * C * dt + 4 * N * f32);
  // Per micro-batch in flight a slot also keeps the chunk's input and dL/d(its output).
  const double stage_input = 2 * outer * N * C * dt;
  // Once per stage: token ids, projection scratch and the backward scratch.
  const double scratch = 2 * N * i32 + outer * N * C * dt + outer * 3 * N * C * dt +
                         inner * (N * qkv * dt + N * C * dt + N * fc_width * dt + N * F * dt);
  // Once on the last stage: final norm output and statistics, logits, losses.
  const double head_acts = outer * (N * C * dt + 2 * N * f32) + inner * N * Vp * dt + N * f32;

  // What each layer keeps per micro-batch in flight, and what is held once for recomputing.
  double layer_kept = layer_acts, recompute_once = 0;
  if (layout.recompute == Recompute::kSelective) {
    recompute_once = inner * N * F * dt;  // the MLP activation, rebuilt in backward
    layer_kept = layer_acts - recompute_once;
  } else if (layout.recompute == Recompute::kFull) {
    layer_kept = outer * N * C * dt;  // the layer's output (the next layer's input)
    recompute_once = layer_acts;      // one layer's, rebuilt in backward
  }

  const std::vector<double> stage_layers = StageLayers(config, pp, vs);
  MemoryEstimate best;
  for (int s = 0; s < pp; ++s) {
    const bool first = s == 0, last = s == pp - 1;
    double params = stage_layers[s] * block_params;
    if (first) params += embedding;
    if (last) params += final_norm + head;
    double in_flight = std::min<double>(micro_batches, pp - s);
    if (first && vs > 1 && pp > 1) in_flight *= 1.0 + (pp - 1.0) / (pp * static_cast<double>(vs));
    double acts = in_flight * (stage_layers[s] * layer_kept + stage_input) + scratch;
    if (stage_layers[s] > 0) acts += recompute_once;
    if (last) acts += head_acts;
    const double shard = dist_opt ? 1.0 / dp : 1.0;
    MemoryEstimate m;
    m.stage = s;
    m.micro_batches_in_flight = static_cast<int64_t>(std::ceil(in_flight));
    m.parameters = Saturate(params);
    m.weights = Saturate(params * dt);
    m.gradients = Saturate(params * 4);
    m.master_weights = bf16 ? Saturate(params * 4 * shard) : 0;
    m.optimizer_moments = Saturate(params * 8 * shard);
    m.activations = Saturate(acts);
    m.total = Saturate(static_cast<double>(m.weights) + m.gradients + m.master_weights +
                       m.optimizer_moments + m.activations);
    if (s == 0 || m.total > best.total) best = m;
  }
  return best;
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
  absl::StrAppend(&out, prefix, "  total               ", Bytes(m.total), " (", m.total,
                  " bytes)\n");
  return out;
}

}  // namespace loom
