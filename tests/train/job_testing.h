// Helpers for trainer_test: job configs built from text the way `loom train` builds them
// (ParseJobConfigText, then ApplyDefaults), llm.c token shards in a temp dir, and the tiny
// jobs that train the PyTorch fixture models (tests/fixtures/model) from their token stream.
// Header-only: the test folders glob only *_test.cc files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "job/config.h"
#include "data/token_shard.h"
#include "runtime/status.h"
#include "tests/model/model_testing.h"

namespace loom::testing {

// Parses `text` (a JobConfig; "$DIR" is replaced by `dir`), applies `overrides`, then the
// defaults.
inline absl::StatusOr<JobConfig> JobFromText(const std::string& text, const std::string& dir,
                                             const std::vector<std::string>& overrides = {}) {
  LOOM_ASSIGN_OR_RETURN(JobConfig job,
                        ParseJobConfigText(absl::StrReplaceAll(text, {{"$DIR", dir}}), "test"));
  for (const std::string& o : overrides) LOOM_RETURN_IF_ERROR(ApplyOverride(&job, o));
  ApplyDefaults(&job);
  return job;
}

// The fixture model's job: its shape, its optimizer settings, a constant learning rate, its
// token stream as the one (unshuffled) shard $DIR/<name>_train.bin, and its weights from the
// model file the generator wrote. One step per call of Trainer::Step then sees exactly the
// fixture's batch.
inline absl::StatusOr<JobConfig> FixtureJob(const Fixture& fx, const std::string& name,
                                            const std::string& dir, int micro_batch) {
  LOOM_ASSIGN_OR_RETURN(GptConfig c, ConfigFromFixture(fx));
  LOOM_ASSIGN_OR_RETURN(FixtureTraining t, TrainingFromFixture(fx));
  LOOM_ASSIGN_OR_RETURN(Tensor stream, fx.Get("stream"));
  LOOM_ASSIGN_OR_RETURN(Tensor tokens, fx.Get("tokens"));
  std::vector<uint16_t> ids(stream.numel());
  for (int64_t i = 0; i < stream.numel(); ++i) {
    ids[i] = static_cast<uint16_t>(stream.data_as<int32_t>()[i]);
  }
  const std::string shard = absl::StrCat(dir, "/", name, "_train.bin");
  LOOM_RETURN_IF_ERROR(WriteShard(shard, ids, ShardFormat::kLlmc));
  const std::string weights = ModelFixturePath(c.is_llama() ? "llama.loom.bin" : "gpt2.llmc.bin");
  const std::string text = absl::StrCat(
      "model { family: ", c.is_llama() ? "LLAMA" : "GPT2", " layers: ", c.layers,
      " heads: ", c.heads, " kv_heads: ", c.kv_heads, " hidden: ", c.hidden,
      " ffn_hidden: ", c.ffn_hidden, " vocab: ", c.vocab, " max_seq: ", c.max_seq,
      " tied_embeddings: ", c.tied_embeddings ? "true" : "false",
      " vocab_pad_multiple: ", c.padded_vocab, " norm_eps: ", c.norm_eps,
      " rope_theta: ", c.rope_theta, " init_from: \"", weights, "\" }\n",
      "parallel { micro_batch_size: ", micro_batch, " global_batch_size: ", tokens.dim(0), " }\n",
      "optimizer { lr: ", t.lr, " beta1: ", t.adam.beta1, " beta2: ", t.adam.beta2,
      " eps: ", t.adam.eps, " weight_decay: ", t.adam.weight_decay, " grad_clip: ", t.grad_clip,
      " }\n", "lr_schedule { warmup_steps: 0 decay_style: CONSTANT total_steps: 10 }\n",
      "data { train: \"", shard, "\" seq_len: ", tokens.dim(1), " shuffle: false }\n",
      "runtime { backend: CPU seed: 1 }\n");
  return JobFromText(text, dir);
}

}  // namespace loom::testing
