// The work behind `loom generate`: a model's weights (a checkpoint of any layout, a Hugging
// Face directory, an llm.c or loom model file: train/model_export.h) on every rank of a tensor
// group the size of the world, each rank reading only its slices (the vocabulary padded for the
// group); the prompt encoded (optionally rendered by an SFT chat template, data/sft_prepare.h)
// with the tokenizer: the one given, else the tokenizer.json / tokenizer.model inside a Hugging
// Face model directory, else the byte tokenizer, preceded by its begin-of-text id if it has one;
// then
// KV-cached decoding (model/generator.h), every rank choosing the same token each step
// (model/sampling.h: the logits' vocab slices are gathered, the draw is seeded), ending at the
// tokenizer's end-of-text. Tokens are handed to `on_token` as they come with the complete UTF-8
// text they finish (data/text_stream.h; rank 0 prints them: the stream on stdout).
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
  // A tokenizer file or directory (data/tokenizer.h). Empty: the tokenizer.json (else
  // tokenizer.model) inside `from` when it is a Hugging Face directory; for a checkpoint, the
  // tokenizer beside its job's training shards (else the job's data.sft.tokenizer) when it is
  // still there; else the byte tokenizer.
  // Its vocabulary must fit the model's (the byte tokenizer's must equal it).
  std::string tokenizer;
  int max_new_tokens = 64;
  SamplingOptions sampling{/*temperature=*/1.0f, /*top_k=*/0, /*top_p=*/1.0f};
  uint64_t seed = 1;
  std::string backend = "cpu";  // cpu, cuda or test (runtime.backend's meanings)
  // End at the end-of-text token (not printed), or, with a template, once the text ends with
  // the template's end-of-turn marker (its assistant suffix less trailing whitespace, printed).
  bool stop_at_eot = true;
  // The KV cache off: every step runs the full forward pass over the whole sequence (the
  // reference generate_test compares the cache against).
  bool full_recompute = false;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids, new_ids;
  std::string text;                // what was handed to on_token, concatenated
  std::string tokenizer;           // which: "byte", or the file it was loaded from
  std::vector<float> last_logits;  // the logits the last token was picked from (real vocab)
  double seconds = 0;              // decoding only (after the prompt)
};

// Collective over `world` (its size is the tensor-parallel degree). on_token(id, text) is
// called on every rank for each new token, with the complete characters it finishes (maybe
// none); after the last, on_token(-1, rest) hands out a character left unfinished (as U+FFFD)
// if there is one.
absl::StatusOr<GenerateResult> Generate(
    const GenerateOptions& options, World* world,
    const std::function<void(int32_t, const std::string&)>& on_token = nullptr);

}  // namespace loom
