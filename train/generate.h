// The work behind `loom generate`: a model's weights (a checkpoint of any layout, a Hugging
// Face directory, an llm.c or loom model file: train/model_export.h) on every rank of a tensor
// group the size of the world, each rank reading only its slices (the vocabulary padded for the
// group); the prompt encoded (byte
// tokenizer; optionally rendered by an SFT chat template, data/sft_prepare.h); then
// KV-cached decoding (model/generator.h), every rank choosing the same token each step
// (model/sampling.h: the logits' vocab slices are gathered, the draw is seeded). Tokens are
// handed to `on_token` as they come (rank 0 prints them: the stream on stdout).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/sampling.h"
#include "parallel/world.h"

namespace loom {

struct GenerateOptions {
  std::string from;           // a checkpoint (step directory or checkpoint.dir) or a model file
  std::string prompt;         // text
  std::string template_name;  // "" = the prompt as is; else an SFT template (qa, chatml, FILE)
  int max_new_tokens = 64;
  SamplingOptions sampling{/*temperature=*/1.0f, /*top_k=*/0, /*top_p=*/1.0f};
  uint64_t seed = 1;
  std::string backend = "cpu";  // cpu, cuda or test (runtime.backend's meanings)
  bool stop_at_eot = true;      // end at the end-of-text token (not printed)
  // The KV cache off: every step runs the full forward pass over the whole sequence (the
  // reference generate_test compares the cache against).
  bool full_recompute = false;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids, new_ids;
  std::vector<float> last_logits;  // the logits the last token was picked from (real vocab)
  double seconds = 0;              // decoding only (after the prompt)
};

// Collective over `world` (its size is the tensor-parallel degree). on_token(id, text) is
// called on every rank for each new token.
absl::StatusOr<GenerateResult> Generate(
    const GenerateOptions& options, World* world,
    const std::function<void(int32_t, const std::string&)>& on_token = nullptr);

}  // namespace loom
