// The parameters of a GPT-2 or LLaMA model as a ParamTable (parallel/param_table.h): stable
// global names ("blocks.3.attn.qkv.weight"), global shapes, init rule, weight-decay flag (2-D
// weights only) and the Megatron split of each over the tensor-parallel group:
//   embedding and untied LM head: vocab rows; position embedding: replicated;
//   QKV (and its bias): column-parallel in three parts (Q, K, V rows: whole local heads and,
//   under grouped-query attention, whole local kv heads); FC1 (and bias) column-parallel;
//   LLaMA's gate_up column-parallel in two parts (gate rows, up rows);
//   attention and MLP output projections: row-parallel, their biases replicated;
//   norm weights and biases: replicated.
// Parameters, gradients and AdamW moments all share the table's flat layout.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "parallel/param_table.h"

namespace loom {

// The parameter descriptions in buffer order.
std::vector<ParamDesc> GptParamDescs(const GptConfig& config);
// The table of tensor rank tp_rank of tp. Refuses heads, kv heads, ffn or padded vocab that
// do not divide by tp (naming the parameter).
absl::StatusOr<ParamTable> GptParamTable(const GptConfig& config, int tp, int tp_rank);
// Trainable parameters of the model as GptParamDescs declares them, padded vocabulary rows not
// counted (config.padded_vocab is ignored). The one home of the parameter count: computed from
// the descriptions of a 0- and a 1-layer model, so it is cheap for any depth.
int64_t GptParameterCount(const GptConfig& config);
// The whole model on one rank (tp = 1), which cannot fail for a validated config.
ParamTable GptParamLayout(const GptConfig& config);

}  // namespace loom
