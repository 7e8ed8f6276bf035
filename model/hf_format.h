// Hugging Face model directories, read and written: config.json beside model.safetensors, or
// beside model.safetensors.index.json and the shards its weight_map names. Two architectures,
// named as transformers names them:
//   GPT2LMHeadModel (model_type gpt2): transformer.wte / wpe, transformer.h.N.ln_1, attn.c_attn,
//     attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj, transformer.ln_f; weights of the Conv1D layers
//     stored [in, out] (loom: [out, in], so they are transposed); c_attn's columns are
//     [q | k | v] as loom's qkv rows; the head tied to wte (lm_head.weight not stored), or
//     stored when tie_word_embeddings is false. GELU must be the tanh form (gelu_new).
//   LlamaForCausalLM (model_type llama): model.embed_tokens, model.layers.N.input_layernorm,
//     self_attn.q_proj / k_proj / v_proj (stacked into loom's qkv rows), self_attn.o_proj,
//     post_attention_layernorm, mlp.gate_proj / up_proj (loom's gate_up rows), mlp.down_proj,
//     model.norm, lm_head (unless tie_word_embeddings); num_key_value_heads, rope_theta and
//     rms_norm_eps from config.json. Rotary embedding: transformers' rotate_half pairs
//     dimension i of a head with i + head_dim/2, which is loom's convention (ops/rope.h), so q
//     and k rows are taken as stored (no permutation; Meta's original checkpoints interleave
//     pairs, and transformers' converter permutes them into this layout).
// Files hold the unpadded vocabulary; loom pads on reading (zero rows) and drops its padding
// on writing. Tensors are F32, BF16 or F16, converted to f32 on reading.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "model/model_file.h"
#include "runtime/dtype.h"

namespace loom {

// A directory holding config.json: what model.init_from and `export --from` read as a Hugging
// Face model (a checkpoint directory holds a manifest instead).
bool IsHfModelDir(const std::string& path);

// Reads config.json and the safetensors headers (no weights): the model, and where each of
// loom's parameters lies. Errors name the file and the field or tensor: an architecture other
// than the two above, a setting loom does not compute (rope_scaling, attention biases, another
// activation), a missing tensor, a tensor of another shape, a tensor loom has no place for.
absl::StatusOr<std::unique_ptr<ModelFileReader>> OpenHfModelDir(const std::string& dir);

struct HfWriteOptions {
  DType dtype = DType::kF32;    // kF32, kBF16 or kF16
  int64_t max_shard_bytes = 0;  // > 0: shards of at most this much (one tensor may exceed it)
};

// Writes `params` (laid out as GptParamLayout(config)) to `dir` (created if missing) as the
// architecture of config.family, tensors in transformers' order. Removes a model.safetensors
// or an index and its shards that an earlier export left there, so the directory holds one
// model.
absl::Status WriteHfModelDir(const std::string& dir, const GptConfig& config,
                             const std::vector<float>& params, const HfWriteOptions& options);

}  // namespace loom
