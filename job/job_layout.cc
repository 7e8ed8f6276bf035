#include "job/job_layout.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "job/config_defaults.h"
#include "job/config_problems.h"
#include "model/gpt_params.h"

namespace loom {
namespace {

std::string Grouped(int64_t v) {
  std::string digits = absl::StrCat(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

// "124.4M", "1.10B".
std::string Short(int64_t v) {
  char buf[32];
  if (v >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.2fB", v / 1e9);
  } else if (v >= 1000000) {
    std::snprintf(buf, sizeof(buf), "%.1fM", v / 1e6);
  } else if (v >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.1fK", v / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
  }
  return buf;
}

// Layers of each model chunk (model order), or empty when the config cannot be split.
std::vector<int> ChunkLayers(const JobConfig& c) {
  const auto& p = c.parallel();
  const int64_t chunks = static_cast<int64_t>(p.pp()) * p.virtual_stages();
  if (chunks <= 0 || c.model().layers() <= 0) return {};
  if (p.stage_layers_size() > 0) {
    if (p.stage_layers_size() != chunks) return {};
    return std::vector<int>(p.stage_layers().begin(), p.stage_layers().end());
  }
  if (c.model().layers() % chunks != 0) return {};
  return std::vector<int>(chunks, static_cast<int>(c.model().layers() / chunks));
}

}  // namespace

GptConfig GptConfigFromJob(const JobConfig& job) {
  const ModelConfig& m = job.model();
  GptConfig c;
  c.family = m.family() == ModelConfig::LLAMA ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = m.layers();
  c.heads = m.heads();
  c.kv_heads = m.kv_heads() > 0 ? m.kv_heads() : m.heads();
  c.hidden = m.hidden();
  c.ffn_hidden = m.ffn_hidden();
  c.vocab = m.vocab();
  c.padded_vocab = PaddedVocab(job);
  c.max_seq = m.max_seq();
  c.tied_embeddings = m.tied_embeddings();
  c.norm_eps = static_cast<float>(m.norm_eps());
  c.rope_theta = static_cast<float>(m.rope_theta());
  return c;
}

int64_t ParameterCount(const ModelConfig& m) {
  JobConfig job;
  *job.mutable_model() = m;
  return GptParameterCount(GptConfigFromJob(job));
}

PipelineScheduleKind PipelineScheduleFromConfig(ParallelConfig::Schedule schedule) {
  switch (schedule) {
    case ParallelConfig::GPIPE:
      return PipelineScheduleKind::kGPipe;
    case ParallelConfig::INTERLEAVED:
      return PipelineScheduleKind::kInterleaved;
    case ParallelConfig::ZERO_BUBBLE:
      return PipelineScheduleKind::kZeroBubble;
    default:
      return PipelineScheduleKind::kOneFOneB;
  }
}

Recompute RecomputeFromConfig(ParallelConfig::Recompute recompute) {
  switch (recompute) {
    case ParallelConfig::SELECTIVE:
      return Recompute::kSelective;
    case ParallelConfig::FULL:
      return Recompute::kFull;
    default:
      return Recompute::kNone;
  }
}

PipelineShape JobLayout::pipeline_shape() const {
  PipelineShape shape;
  shape.stages = pp;
  shape.micro_batches = static_cast<int>(grad_accum_steps);
  shape.virtual_stages = virtual_stages;
  return shape;
}

absl::StatusOr<JobLayout> JobLayout::Create(const JobConfig& config_in, int world_size) {
  JobConfig c = config_in;
  ApplyDefaults(&c);
  absl::Status valid = ValidateJobConfig(c, world_size);
  if (!valid.ok()) return valid;
  return FromValid(c, world_size);
}

JobLayout JobLayout::FromValid(const JobConfig& config, int world_size) {
  JobLayout d;
  d.config = config;
  const JobConfig& c = d.config;
  const ParallelConfig& p = c.parallel();
  d.model = GptConfigFromJob(c);
  d.world_size = world_size;
  d.tp = p.tp();
  d.pp = p.pp();
  d.virtual_stages = p.virtual_stages();
  d.cp = p.cp();
  d.dp = p.dp() > 0 ? p.dp() : world_size / (d.tp * d.pp * d.cp);
  d.schedule = PipelineScheduleFromConfig(p.schedule());
  d.recompute = RecomputeFromConfig(p.recompute());
  d.bf16 = c.precision() == JobConfig::BF16;
  d.sequence_parallel = p.sequence_parallel() && d.tp > 1;
  d.distributed_optimizer = p.distributed_optimizer();
  d.micro_batch_size = p.micro_batch_size();
  d.seq_len = c.data().seq_len();
  d.seq_len_per_cp_rank = d.seq_len / d.cp;
  d.sequences_per_step = p.global_batch_size();
  d.grad_accum_steps = p.global_batch_size() / (int64_t{p.micro_batch_size()} * d.dp);
  d.tokens_per_step = d.sequences_per_step * c.data().seq_len();
  d.padded_vocab = PaddedVocab(c);
  d.vocab_per_tp_rank = d.padded_vocab / d.tp;
  d.head_dim = c.model().hidden() / c.model().heads();
  d.parameters = GptParameterCount(d.model);
  const int64_t pad_rows = d.padded_vocab - c.model().vocab();
  d.padded_parameters =
      d.parameters + pad_rows * c.model().hidden() * (c.model().tied_embeddings() ? 1 : 2);
  d.steps_this_run =
      c.runtime().stop_at_step() > 0 ? c.runtime().stop_at_step() : c.lr_schedule().total_steps();
  d.chunk_layers = ChunkLayers(c);
  int first = 0;
  for (int n : d.chunk_layers) {
    d.chunk_first_layer.push_back(first);
    first += n;
  }
  return d;
}

std::string FormatJobLayout(const JobLayout& d, const std::string& prefix) {
  std::vector<std::string> lines;
  lines.push_back(absl::StrCat("world size: ", d.world_size, " = dp ", d.dp, " x tp ", d.tp,
                               " x pp ", d.pp, d.cp > 1 ? absl::StrCat(" x cp ", d.cp) : "",
                               " (virtual stages ", d.virtual_stages, ")"));
  if (d.cp > 1) {
    lines.push_back(absl::StrCat("context parallel: each sequence of ", d.seq_len,
                                 " tokens in ", 2 * d.cp, " chunks of ", d.seq_len / (2 * d.cp),
                                 "; cp rank r holds chunks r and ", 2 * d.cp - 1, " - r (",
                                 d.seq_len_per_cp_rank, " tokens per rank)"));
  }
  lines.push_back(
      absl::StrCat("parameters: ", Grouped(d.parameters), " (", Short(d.parameters),
                   "); allocated with the padded vocab: ", Grouped(d.padded_parameters)));
  lines.push_back(absl::StrCat("padded vocab: ", d.padded_vocab, " (", d.vocab_per_tp_rank,
                               " rows per tensor rank)"));
  lines.push_back(absl::StrCat("head dim: ", d.head_dim));
  lines.push_back(absl::StrCat("batch: ", d.sequences_per_step, " sequences per step = micro ",
                               d.sequences_per_step / (d.grad_accum_steps * d.dp), " x dp ", d.dp,
                               " x ", d.grad_accum_steps, " accumulation steps; ",
                               Grouped(d.tokens_per_step), " tokens per step"));
  for (int s = 0; s < d.pp; ++s) {
    std::vector<std::string> chunks;
    for (int v = 0; v < d.virtual_stages; ++v) {
      const int n = d.LayersOf(s, v), first = d.FirstLayerOf(s, v);
      chunks.push_back(n == 1 ? absl::StrCat("layer ", first)
                              : absl::StrCat("layers ", first, "-", first + n - 1));
    }
    lines.push_back(absl::StrCat("stage ", s, ": ", absl::StrJoin(chunks, ", ")));
  }
  lines.push_back(absl::StrCat("steps this run: ", d.steps_this_run));
  std::string out;
  for (const auto& line : lines) absl::StrAppend(&out, prefix, line, "\n");
  return out;
}

}  // namespace loom
