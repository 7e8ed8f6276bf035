#include "model/gpt_config.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace loom {

std::vector<std::string> GptConfig::Problems() const {
  std::vector<std::string> errs;
  auto add = [&](auto&&... parts) { errs.push_back(absl::StrCat(parts...)); };
  auto in_range = [&](const char* field, int64_t v, int64_t max) {
    if (v < 1) {
      add(field, " must be >= 1 (got ", v, ")");
    } else if (v > max) {
      add(field, " (", v, ") exceeds ", max, ", the most loom accepts");
    }
  };
  in_range("model.layers", layers, kMaxLayers);
  in_range("model.heads", heads, kMaxHidden);
  if (heads > 0) in_range("model.kv_heads", kv_heads, kMaxHidden);
  in_range("model.hidden", hidden, kMaxHidden);
  if (hidden > 0 && hidden <= kMaxHidden) in_range("model.ffn_hidden", ffn_hidden, kMaxFfnHidden);
  in_range("model.vocab", vocab, kMaxPaddedVocab);
  in_range("model.max_seq", max_seq, kMaxSeq);
  if (heads > 0 && hidden > 0 && hidden % heads != 0) {
    add("model.hidden (", hidden, ") is not divisible by model.heads (", heads, ")");
  }
  if (heads > 0 && kv_heads > 0 && heads % kv_heads != 0) {
    add("model.heads (", heads, ") is not divisible by model.kv_heads (", kv_heads, ")");
  }
  if (family == ModelFamily::kGpt2 && kv_heads != heads) {
    add("model.kv_heads (", kv_heads, ") must equal model.heads (", heads,
        ") for model.family GPT2 (GPT-2 has no grouped-query attention; use LLAMA)");
  }
  if (family == ModelFamily::kLlama && heads > 0 && hidden > 0 && hidden % heads == 0 &&
      head_dim() % 2 != 0) {
    add("model.hidden (", hidden, ") / model.heads (", heads, ") = head dim ", head_dim(),
        " must be even for rotary embeddings (model.family LLAMA)");
  }
  if (vocab >= 1 && padded_vocab < vocab) {
    add("padded vocab (", padded_vocab, ") is smaller than model.vocab (", vocab, ")");
  } else if (padded_vocab > kMaxPaddedVocab) {
    add("padded vocab (", padded_vocab, ") exceeds ", kMaxPaddedVocab,
        " (lower model.vocab_pad_multiple)");
  }
  if (!(norm_eps > 0)) add("model.norm_eps must be > 0 (got ", norm_eps, ")");
  if (family == ModelFamily::kLlama && !(rope_theta > 0)) {
    add("model.rope_theta must be > 0 (got ", rope_theta, ")");
  }
  return errs;
}

absl::Status GptConfig::Validate() const {
  const std::vector<std::string> errs = Problems();
  if (errs.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errs, "; "));
}

double TrainingFlopsPerToken(const GptConfig& c, int64_t num_params, int seq_len) {
  return 6.0 * static_cast<double>(num_params) +
         6.0 * c.layers * static_cast<double>(c.hidden) * seq_len;
}

std::vector<std::string> GptConfigDifferences(const GptConfig& a, const GptConfig& b,
                                              const std::string& a_label,
                                              const std::string& b_label, bool with_padding,
                                              bool with_numerics) {
  std::vector<std::string> diffs;
  auto cmp = [&](const char* field, auto mine, auto theirs) {
    if (mine != theirs) {
      diffs.push_back(absl::StrCat(field, ": ", a_label, " ", mine, ", ", b_label, " ", theirs));
    }
  };
  cmp("model.family", a.is_llama() ? "LLAMA" : "GPT2", b.is_llama() ? "LLAMA" : "GPT2");
  cmp("model.layers", a.layers, b.layers);
  cmp("model.heads", a.heads, b.heads);
  cmp("model.kv_heads", a.kv_heads, b.kv_heads);
  cmp("model.hidden", a.hidden, b.hidden);
  cmp("model.ffn_hidden", a.ffn_hidden, b.ffn_hidden);
  cmp("model.vocab", a.vocab, b.vocab);
  if (with_padding) cmp("padded vocab", a.padded_vocab, b.padded_vocab);
  cmp("model.max_seq", a.max_seq, b.max_seq);
  cmp("model.tied_embeddings", a.tied_embeddings, b.tied_embeddings);
  if (with_numerics) {
    cmp("model.norm_eps", a.norm_eps, b.norm_eps);
    // RoPE's base only matters where there is RoPE.
    if (a.is_llama() && b.is_llama()) cmp("model.rope_theta", a.rope_theta, b.rope_theta);
  }
  return diffs;
}

}  // namespace loom
