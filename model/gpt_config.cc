#include "model/gpt_config.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace loom {

absl::Status GptConfig::Validate() const {
  std::vector<std::string> errs;
  auto positive = [&](const char* f, int64_t v) {
    if (v <= 0) errs.push_back(absl::StrCat(f, " must be > 0, got ", v));
  };
  positive("model.layers", layers);
  positive("model.heads", heads);
  positive("model.kv_heads", kv_heads);
  positive("model.hidden", hidden);
  positive("model.ffn_hidden", ffn_hidden);
  positive("model.vocab", vocab);
  positive("model.max_seq", max_seq);
  if (heads > 0 && hidden % heads != 0) {
    errs.push_back(absl::StrCat("model.hidden (", hidden, ") must be divisible by model.heads (",
                                heads, ")"));
  }
  if (heads > 0 && kv_heads > 0 && heads % kv_heads != 0) {
    errs.push_back(absl::StrCat("model.heads (", heads, ") must be divisible by model.kv_heads (",
                                kv_heads, ")"));
  }
  if (padded_vocab < vocab) {
    errs.push_back(absl::StrCat("padded vocab (", padded_vocab, ") is smaller than model.vocab (",
                                vocab, ")"));
  }
  if (family == ModelFamily::kGpt2 && kv_heads != heads) {
    errs.push_back(absl::StrCat("GPT2 family has no grouped-query attention: model.kv_heads (",
                                kv_heads, ") must equal model.heads (", heads, ")"));
  }
  if (heads > 0 && hidden % heads == 0 && family == ModelFamily::kLlama && head_dim() % 2 != 0) {
    errs.push_back(absl::StrCat("RoPE needs an even head dim, got ", head_dim()));
  }
  if (errs.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errs, "; "));
}

double TrainingFlopsPerToken(const GptConfig& c, int64_t num_params, int seq_len) {
  return 6.0 * static_cast<double>(num_params) +
         6.0 * c.layers * static_cast<double>(c.hidden) * seq_len;
}

}  // namespace loom
