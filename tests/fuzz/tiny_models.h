// Tiny models the fuzz targets' seeds are written from (model files, Hugging Face directories):
// one GPT-2 and one LLaMA (grouped-query attention, untied head) small enough for seed files of
// a few KB, with deterministic weights.
#pragma once

#include <cstdint>
#include <vector>

#include "model/gpt_config.h"
#include "model/gpt_params.h"

namespace loom::fuzz {

// padded_vocab: the stored rows (loom files pad; Hugging Face files hold the vocabulary only).
inline GptConfig TinyGpt2(int64_t padded_vocab) {
  GptConfig c;
  c.layers = 1;
  c.heads = 2;
  c.kv_heads = 2;
  c.hidden = 8;
  c.ffn_hidden = 32;
  c.vocab = 11;
  c.padded_vocab = padded_vocab;
  c.max_seq = 4;
  return c;
}

inline GptConfig TinyLlama(int64_t padded_vocab) {
  GptConfig c = TinyGpt2(padded_vocab);
  c.family = ModelFamily::kLlama;
  c.kv_heads = 1;
  c.ffn_hidden = 24;
  c.tied_embeddings = false;
  return c;
}

inline std::vector<float> TinyWeights(const GptConfig& c) {
  std::vector<float> w(GptParamLayout(c).total());
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 13) * 0.125f - 0.75f;
  return w;
}

}  // namespace loom::fuzz
