// loom's defaults for a JobConfig, in one place: the fields a user may leave out and the values
// derived from others (kv_heads, ffn_hidden, seq_len, the padded vocab). Every other file reads
// a config with its defaults applied (LoadJobConfig and JobLayout::Create apply them).
#pragma once

#include <cstdint>

#include "proto/job.pb.h"

namespace loom {

// Defaults that functions accepting a config without defaults also need: one definition each.
inline constexpr int kDefaultVocabPadMultiple = 128;
inline constexpr int kDefaultCollectiveTimeoutS = 300;
inline constexpr int kDefaultMaxNonfiniteSteps = 5;

// Fills every default (see proto/job.proto) that depends only on the config itself. Idempotent.
// Call it after the overrides so derived defaults (kv_heads, ffn_hidden, seq_len) follow them.
void ApplyDefaults(JobConfig* config);

// LLaMA's MLP width for a model width: 2/3 of 4 * hidden, rounded up to a multiple of 256.
int64_t LlamaFfnHidden(int64_t hidden);

// Rows of the embedding / LM head: model.vocab rounded up to a multiple of
// model.vocab_pad_multiple * parallel.tp (Megatron's padding), so each tensor rank holds an equal
// slice. The padded rows are not trained (their logits are masked) and not counted as parameters.
int64_t PaddedVocab(const JobConfig& config);

}  // namespace loom
