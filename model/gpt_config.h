// GptConfig: the shape of a GPT-family model, independent of how it is parallelised or where
// it came from (job file, llm.c checkpoint, test). GPT-2 style: learned positions, LayerNorm,
// GeLU MLP, biases, embedding tied to the LM head. LLaMA style: RoPE, RMSNorm, SwiGLU, no
// biases, untied head, grouped-query attention.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace loom {

enum class ModelFamily { kGpt2, kLlama };

struct GptConfig {
  ModelFamily family = ModelFamily::kGpt2;
  int layers = 0;
  int heads = 0;
  int kv_heads = 0;  // == heads for GPT-2
  int hidden = 0;    // C
  int ffn_hidden = 0;
  int64_t vocab = 0;         // real vocabulary (e.g. 50257)
  int64_t padded_vocab = 0;  // rows of the embedding / head (>= vocab, padded rows stay zero)
  int max_seq = 0;
  bool tied_embeddings = true;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;

  int head_dim() const { return hidden / heads; }
  int qkv_dim() const { return (heads + 2 * kv_heads) * head_dim(); }
  bool is_llama() const { return family == ModelFamily::kLlama; }
  // Every reason the model cannot be built with these sizes, one sentence each naming the job
  // field (model.layers, ...) and the numbers. This is the one home of the model-shape rules:
  // the job validation (job/config.cc) reports these too. Upper bounds keep every size
  // product the trainer and the memory estimate form within int64.
  std::vector<std::string> Problems() const;
  // Problems() as one InvalidArgument status, or OK.
  absl::Status Validate() const;
};

// Sane upper bounds on the model's sizes (far beyond any real model, low enough that no
// product of them overflows).
inline constexpr int64_t kMaxLayers = 10'000;
inline constexpr int64_t kMaxHidden = 1 << 18;     // 262,144
inline constexpr int64_t kMaxFfnHidden = 1 << 21;  // 2,097,152
inline constexpr int64_t kMaxSeq = 1 << 22;        // 4,194,304 tokens
inline constexpr int64_t kMaxPaddedVocab = 1 << 24;

// Flops of one training step per token, the standard 6N + 6*L*C*T (forward + backward of the
// parameter GEMMs, plus the attention score and value GEMMs with the causal half counted).
double TrainingFlopsPerToken(const GptConfig& c, int64_t num_params, int seq_len);

// The fields in which two model shapes differ, one "<field>: <a_label> X, <b_label> Y" each,
// named as job fields, in a fixed order: everything that changes the computation's shape, plus
// the padded vocab with `with_padding` (a file's tensors are stored padded) and the numerics
// (norm_eps; rope_theta where both use RoPE) with `with_numerics`. The one comparison behind
// "this file / checkpoint is of another model" (model files, checkpoints).
std::vector<std::string> GptConfigDifferences(const GptConfig& a, const GptConfig& b,
                                              const std::string& a_label,
                                              const std::string& b_label, bool with_padding,
                                              bool with_numerics);

}  // namespace loom
