#include "job/config_defaults.h"

#include <algorithm>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"

namespace loom {

int64_t LlamaFfnHidden(int64_t hidden) {
  const int64_t inner = 2 * (4 * hidden) / 3;
  return (inner + 255) / 256 * 256;
}

void ApplyDefaults(JobConfig* c) {
  ModelConfig* m = c->mutable_model();
  if (!m->has_family()) m->set_family(ModelConfig::GPT2);
  const bool llama = m->family() == ModelConfig::LLAMA;
  if (m->kv_heads() == 0) m->set_kv_heads(m->heads());
  if (m->ffn_hidden() == 0 && m->hidden() > 0) {
    const int64_t ffn = llama ? LlamaFfnHidden(m->hidden()) : 4 * int64_t{m->hidden()};
    if (ffn <= std::numeric_limits<int32_t>::max()) m->set_ffn_hidden(static_cast<int32_t>(ffn));
  }
  if (!m->has_tied_embeddings()) m->set_tied_embeddings(!llama);
  if (!m->has_norm_eps()) m->set_norm_eps(1e-5);
  if (!m->has_rope_theta()) m->set_rope_theta(10000.0);
  if (!m->has_vocab_pad_multiple()) m->set_vocab_pad_multiple(kDefaultVocabPadMultiple);

  ParallelConfig* p = c->mutable_parallel();
  if (!p->has_tp()) p->set_tp(1);
  if (!p->has_pp()) p->set_pp(1);
  if (!p->has_cp()) p->set_cp(1);
  if (!p->has_virtual_stages()) p->set_virtual_stages(1);
  if (!p->has_micro_batch_size()) p->set_micro_batch_size(1);
  if (!p->has_schedule()) p->set_schedule(ParallelConfig::ONE_F_ONE_B);
  if (!p->has_grad_bucket_mb()) p->set_grad_bucket_mb(25.0);

  OptimizerConfig* o = c->mutable_optimizer();
  if (!o->has_beta1()) o->set_beta1(0.9);
  if (!o->has_beta2()) o->set_beta2(0.95);
  if (!o->has_eps()) o->set_eps(1e-8);
  if (!o->has_weight_decay()) o->set_weight_decay(0.1);
  if (!o->has_grad_clip()) o->set_grad_clip(1.0);

  LrScheduleConfig* s = c->mutable_lr_schedule();
  if (!s->has_decay_style()) s->set_decay_style(LrScheduleConfig::COSINE);

  RuntimeConfig* rt = c->mutable_runtime();
  if (!rt->has_backend()) rt->set_backend(RuntimeConfig::AUTO);
  if (!rt->has_collective_timeout_s()) rt->set_collective_timeout_s(kDefaultCollectiveTimeoutS);
  if (!rt->has_seed()) rt->set_seed(1337);
  if (!rt->has_max_nonfinite_steps()) rt->set_max_nonfinite_steps(kDefaultMaxNonfiniteSteps);
  if (!rt->has_stop_margin_s() && rt->max_duration_s() > 0) {
    rt->set_stop_margin_s(static_cast<int32_t>(std::min<int64_t>(60, rt->max_duration_s() / 10)));
  }

  DataConfig* d = c->mutable_data();
  if (!d->has_format()) d->set_format(DataConfig::LLMC);
  if (d->seq_len() == 0) d->set_seq_len(m->max_seq());
  if (!d->has_shuffle()) d->set_shuffle(true);
  if (!d->has_reset_position_ids()) d->set_reset_position_ids(true);
  if (!d->has_seed()) d->set_seed(rt->seed());

  CheckpointConfig* k = c->mutable_checkpoint();
  if (!k->has_async()) k->set_async(false);
  const std::string resume = absl::AsciiStrToUpper(k->resume());
  if (k->resume().empty() || resume == "AUTO") {
    k->set_resume("AUTO");
  } else if (resume == "NONE") {
    k->set_resume("NONE");
  }

  LoggingConfig* l = c->mutable_logging();
  if (!l->has_interval()) l->set_interval(1);
  if (!l->has_jsonl()) l->set_jsonl(true);
  if (!l->has_tensorboard()) l->set_tensorboard(true);
  if (!l->has_eval_batches()) l->set_eval_batches(20);
  if (!l->has_sample_length()) {
    l->set_sample_length(m->max_seq() > 0 ? std::min(64, m->max_seq()) : 64);
  }

  if (!c->has_precision()) c->set_precision(JobConfig::FP32);
}

int64_t PaddedVocab(const JobConfig& config) {
  const int64_t vocab = config.model().vocab();
  const int64_t pad = config.model().has_vocab_pad_multiple() ? config.model().vocab_pad_multiple()
                                                              : kDefaultVocabPadMultiple;
  const int64_t tp = config.parallel().has_tp() ? config.parallel().tp() : 1;
  const int64_t multiple = std::max<int64_t>(1, pad) * std::max<int64_t>(1, tp);
  return (vocab + multiple - 1) / multiple * multiple;
}

}  // namespace loom
