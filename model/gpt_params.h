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
//
// Pipeline parallelism: a stage's table holds only the parameters of its part of the model
// (GptStage), under the same global names. The last stage of a model with tied embeddings holds
// a copy of "wte.weight" for its LM head (ParamDesc::tied_copy), first in its table so that its
// gradient, which waits for the first stage's, is reduced last.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "parallel/param_table.h"

namespace loom {

// The part of the model one pipeline stage holds.
struct GptStage {
  struct Chunk {
    int first_layer = 0;
    int layers = 0;
  };
  // The stage's model chunks in chunk order (chunk c of stage s is virtual stage c * pp + s);
  // empty = the whole model as one chunk.
  std::vector<Chunk> chunks;
  bool embedding = true;  // chunk 0 begins the model
  bool head = true;       // the last chunk ends it (final norm, LM head, loss)
};
// `stage` with the whole-model default filled in; InvalidArgument when a chunk is not a layer
// range of the model or is empty while the model has layers.
absl::StatusOr<GptStage> ResolveGptStage(const GptConfig& config, const GptStage& stage);
// Stage `stage` of a pp-stage pipeline whose chunks hold `chunk_layers` layers (model order,
// pp * virtual_stages entries, as JobLayout::chunk_layers).
GptStage PipelineStageOf(int pp, int stage, const std::vector<int>& chunk_layers);

// The parameter descriptions in buffer order (of the whole model, or of a stage's part).
std::vector<ParamDesc> GptParamDescs(const GptConfig& config, const GptStage& stage = {});
// The table of tensor rank tp_rank of tp. Refuses heads, kv heads, ffn or padded vocab that
// do not divide by tp (naming the parameter).
absl::StatusOr<ParamTable> GptParamTable(const GptConfig& config, int tp, int tp_rank,
                                         const GptStage& stage = {});
// Trainable parameters of the model as GptParamDescs declares them, padded vocabulary rows not
// counted (config.padded_vocab is ignored). The one home of the parameter count: computed from
// the descriptions of a 0- and a 1-layer model, so it is cheap for any depth.
int64_t GptParameterCount(const GptConfig& config);
// The whole model on one rank (tp = 1), which cannot fail for a validated config.
ParamTable GptParamLayout(const GptConfig& config);

// One parameter of a table by position (ParamTable::specs()), resolved from its name once.
struct ParamRef {
  int index = -1;  // -1: not held (another family's parameter, or another stage's)
  bool held() const { return index >= 0; }
};

// Every parameter GptModel reads, resolved against a stage's table when the model is built, so
// that a name the table lacks is an error there and not a failed lookup inside a step.
struct GptParamRefs {
  // One block's parameters: GPT-2 names / LLaMA names. LLaMA has no biases and no *_b.
  struct Layer {
    ParamRef norm1_w, norm1_b;  // ln1 / attn_norm
    ParamRef qkv_w, qkv_b;      // attn.qkv
    ParamRef proj_w, proj_b;    // attn.proj
    ParamRef norm2_w, norm2_b;  // ln2 / mlp_norm
    ParamRef fc_w, fc_b;        // mlp.fc / mlp.gate_up
    ParamRef out_w, out_b;      // mlp.proj / mlp.down
  };
  std::vector<Layer> layers;                  // by global layer index; the stage's are held
  ParamRef wte, wpe;                          // the embedding stage's (wpe: GPT-2 only)
  ParamRef final_norm_w, final_norm_b, head;  // the head stage's; head: lm_head or wte
};
// Resolves the parameters a (resolved) stage of the model reads in `table`. Internal error,
// naming them, when the table lacks one the model reads or holds one it never reads (a
// parameter that would train nothing).
absl::StatusOr<GptParamRefs> ResolveGptParams(const GptConfig& config, const GptStage& stage,
                                              const ParamTable& table);

}  // namespace loom
