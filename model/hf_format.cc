#include "model/hf_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "model/hf_safetensors.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Value;

constexpr char kConfig[] = "config.json";
constexpr char kSingle[] = "model.safetensors";
constexpr char kIndex[] = "model.safetensors.index.json";

// ---- the names: one plan shared by the reader and the writer --------------------------------

// One stored tensor of a loom parameter, in loom's orientation (rows x cols; cols 0 = 1-D).
struct HfPart {
  std::string name;
  int64_t rows = 0, cols = 0;
  bool transposed = false;  // stored [cols, rows] (GPT-2's Conv1D)
  std::vector<int64_t> StoredShape() const {
    if (cols == 0) return {rows};
    return transposed ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{rows, cols};
  }
};
struct HfParam {
  std::string loom;
  std::vector<HfPart> parts;  // stacked along loom's dim 0
};

const char* ArchitectureOf(const GptConfig& c) {
  return c.is_llama() ? "LlamaForCausalLM" : "GPT2LMHeadModel";
}

// Every loom parameter of `c` and the transformers tensors it is made of, in transformers'
// state_dict order. `prefix`: "transformer." / "model." as the *ForCausalLM / *LMHeadModel
// classes name them ("" for a checkpoint of the bare GPT2Model / LlamaModel).
std::vector<HfParam> HfPlan(const GptConfig& c, const std::string& prefix) {
  const int64_t C = c.hidden, F = c.ffn_hidden, V = c.vocab, hd = c.head_dim();
  std::vector<HfParam> plan;
  auto one = [&](std::string loom, std::string name, int64_t rows, int64_t cols,
                 bool transposed = false) {
    plan.push_back({std::move(loom), {{std::move(name), rows, cols, transposed}}});
  };
  if (!c.is_llama()) {
    one("wte.weight", prefix + "wte.weight", V, C);
    one("wpe.weight", prefix + "wpe.weight", c.max_seq, C);
    for (int i = 0; i < c.layers; ++i) {
      const std::string l = absl::StrCat("blocks.", i, "."), h = absl::StrCat(prefix, "h.", i, ".");
      one(l + "ln1.weight", h + "ln_1.weight", C, 0);
      one(l + "ln1.bias", h + "ln_1.bias", C, 0);
      one(l + "attn.qkv.weight", h + "attn.c_attn.weight", 3 * C, C, true);
      one(l + "attn.qkv.bias", h + "attn.c_attn.bias", 3 * C, 0);
      one(l + "attn.proj.weight", h + "attn.c_proj.weight", C, C, true);
      one(l + "attn.proj.bias", h + "attn.c_proj.bias", C, 0);
      one(l + "ln2.weight", h + "ln_2.weight", C, 0);
      one(l + "ln2.bias", h + "ln_2.bias", C, 0);
      one(l + "mlp.fc.weight", h + "mlp.c_fc.weight", F, C, true);
      one(l + "mlp.fc.bias", h + "mlp.c_fc.bias", F, 0);
      one(l + "mlp.proj.weight", h + "mlp.c_proj.weight", C, F, true);
      one(l + "mlp.proj.bias", h + "mlp.c_proj.bias", C, 0);
    }
    one("ln_f.weight", prefix + "ln_f.weight", C, 0);
    one("ln_f.bias", prefix + "ln_f.bias", C, 0);
  } else {
    one("wte.weight", prefix + "embed_tokens.weight", V, C);
    for (int i = 0; i < c.layers; ++i) {
      const std::string l = absl::StrCat("blocks.", i, "."),
                        h = absl::StrCat(prefix, "layers.", i, ".");
      one(l + "attn_norm.weight", h + "input_layernorm.weight", C, 0);
      plan.push_back({l + "attn.qkv.weight",
                      {{h + "self_attn.q_proj.weight", c.heads * hd, C},
                       {h + "self_attn.k_proj.weight", c.kv_heads * hd, C},
                       {h + "self_attn.v_proj.weight", c.kv_heads * hd, C}}});
      one(l + "attn.proj.weight", h + "self_attn.o_proj.weight", C, c.heads * hd);
      one(l + "mlp_norm.weight", h + "post_attention_layernorm.weight", C, 0);
      plan.push_back({l + "mlp.gate_up.weight",
                      {{h + "mlp.gate_proj.weight", F, C}, {h + "mlp.up_proj.weight", F, C}}});
      one(l + "mlp.down.weight", h + "mlp.down_proj.weight", C, F);
    }
    one("final_norm.weight", prefix + "norm.weight", C, 0);
  }
  if (!c.tied_embeddings) one("lm_head.weight", "lm_head.weight", V, C);
  return plan;
}

// Buffers some checkpoints carry that are no parameters (masks, rotary frequencies), and the
// LM head a tied model may store anyway (transformers ties it to the embedding on loading).
bool Ignorable(const std::string& name, const GptConfig& c) {
  return absl::EndsWith(name, ".attn.bias") || absl::EndsWith(name, ".attn.masked_bias") ||
         absl::EndsWith(name, ".rotary_emb.inv_freq") ||
         (c.tied_embeddings && name == "lm_head.weight");
}

// ---- config.json ----------------------------------------------------------------------------

class JsonObject {
 public:
  JsonObject(std::string path, google::protobuf::Struct s)
      : path_(std::move(path)), s_(std::move(s)) {}

  const Value* Find(const std::string& key) const {
    auto it = s_.fields().find(key);
    if (it == s_.fields().end() || it->second.kind_case() == Value::kNullValue) return nullptr;
    return &it->second;
  }
  absl::StatusOr<double> Number(const std::string& key, std::optional<double> fallback) const {
    const Value* v = Find(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return absl::InvalidArgumentError(absl::StrCat(path_, ": field \"", key, "\" is missing"));
    }
    if (v->kind_case() != Value::kNumberValue) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": field \"", key, "\" is not a number"));
    }
    return v->number_value();
  }
  absl::StatusOr<int> Int(const std::string& key,
                          std::optional<int> fallback = std::nullopt) const {
    LOOM_ASSIGN_OR_RETURN(double d, Number(key, fallback));
    if (std::floor(d) != d || d < 0 || d > (1 << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": field \"", key, "\" must be a whole number >= 0, got ", d));
    }
    return static_cast<int>(d);
  }
  bool Bool(const std::string& key, bool fallback) const {
    const Value* v = Find(key);
    return v != nullptr && v->kind_case() == Value::kBoolValue ? v->bool_value() : fallback;
  }
  std::string String(const std::string& key) const {
    const Value* v = Find(key);
    return v != nullptr && v->kind_case() == Value::kStringValue ? v->string_value() : "";
  }
  const google::protobuf::Struct& fields() const { return s_; }

 private:
  std::string path_;
  google::protobuf::Struct s_;
};

absl::StatusOr<JsonObject> ReadJson(const std::string& path) {
  LOOM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  google::protobuf::Struct s;
  auto parsed = google::protobuf::util::JsonStringToMessage(text, &s);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a JSON object: ", std::string(parsed.message())));
  }
  return JsonObject(path, std::move(s));
}

// The model config.json describes; refuses what loom would compute differently.
absl::StatusOr<GptConfig> ConfigFromJson(const JsonObject& j, const std::string& path,
                                         std::string* architecture) {
  const std::string type = j.String("model_type");
  std::vector<std::string> archs;
  if (const Value* a = j.Find("architectures"); a != nullptr && a->has_list_value()) {
    for (const Value& v : a->list_value().values()) archs.push_back(v.string_value());
  }
  GptConfig c;
  auto refuse = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", why, "; loom computes it otherwise"));
  };
  if (type == "gpt2") {
    *architecture = "GPT2LMHeadModel";
    c.family = ModelFamily::kGpt2;
    LOOM_ASSIGN_OR_RETURN(c.hidden, j.Int("n_embd"));
    LOOM_ASSIGN_OR_RETURN(c.layers, j.Int("n_layer"));
    LOOM_ASSIGN_OR_RETURN(c.heads, j.Int("n_head"));
    c.kv_heads = c.heads;
    LOOM_ASSIGN_OR_RETURN(c.max_seq, j.Int("n_positions"));
    LOOM_ASSIGN_OR_RETURN(c.ffn_hidden, j.Int("n_inner", 4 * c.hidden));
    LOOM_ASSIGN_OR_RETURN(double eps, j.Number("layer_norm_epsilon", 1e-5));
    c.norm_eps = static_cast<float>(eps);
    c.tied_embeddings = j.Bool("tie_word_embeddings", true);
    const std::string act = j.String("activation_function");
    if (!act.empty() && act != "gelu_new" && act != "gelu_pytorch_tanh") {
      return refuse(absl::StrCat("activation_function \"", act,
                                 "\" (loom's GPT-2 uses the tanh GELU, gelu_new)"));
    }
    if (j.Bool("scale_attn_by_inverse_layer_idx", false)) {
      return refuse("scale_attn_by_inverse_layer_idx is true");
    }
    if (!j.Bool("scale_attn_weights", true)) return refuse("scale_attn_weights is false");
    if (j.Bool("add_cross_attention", false)) return refuse("add_cross_attention is true");
  } else if (type == "llama") {
    *architecture = "LlamaForCausalLM";
    c.family = ModelFamily::kLlama;
    LOOM_ASSIGN_OR_RETURN(c.hidden, j.Int("hidden_size"));
    LOOM_ASSIGN_OR_RETURN(c.layers, j.Int("num_hidden_layers"));
    LOOM_ASSIGN_OR_RETURN(c.heads, j.Int("num_attention_heads"));
    LOOM_ASSIGN_OR_RETURN(c.kv_heads, j.Int("num_key_value_heads", c.heads));
    LOOM_ASSIGN_OR_RETURN(c.ffn_hidden, j.Int("intermediate_size"));
    LOOM_ASSIGN_OR_RETURN(c.max_seq, j.Int("max_position_embeddings", 2048));
    LOOM_ASSIGN_OR_RETURN(double eps, j.Number("rms_norm_eps", 1e-6));
    LOOM_ASSIGN_OR_RETURN(double theta, j.Number("rope_theta", 10000.0));
    c.norm_eps = static_cast<float>(eps);
    c.rope_theta = static_cast<float>(theta);
    c.tied_embeddings = j.Bool("tie_word_embeddings", false);
    const std::string act = j.String("hidden_act");
    if (!act.empty() && act != "silu") {
      return refuse(absl::StrCat("hidden_act \"", act, "\" (loom's LLaMA MLP is SwiGLU, silu)"));
    }
    if (j.Bool("attention_bias", false)) return refuse("attention_bias is true");
    if (j.Bool("mlp_bias", false)) return refuse("mlp_bias is true");
    if (j.Find("rope_scaling") != nullptr) {
      return refuse("rope_scaling is set (loom's RoPE has no scaling)");
    }
    if (c.heads > 0 && j.Find("head_dim") != nullptr) {
      LOOM_ASSIGN_OR_RETURN(int head_dim, j.Int("head_dim"));
      if (head_dim * c.heads != c.hidden) {
        return refuse(
            absl::StrCat("head_dim ", head_dim, " is not hidden_size / num_attention_heads"));
      }
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": model_type \"", type, "\"",
        archs.empty() ? "" : absl::StrCat(" (architectures ", absl::StrJoin(archs, ", "), ")"),
        " is not supported: loom reads gpt2 (GPT2LMHeadModel) and llama (LlamaForCausalLM)"));
  }
  LOOM_ASSIGN_OR_RETURN(int vocab, j.Int("vocab_size"));
  c.vocab = vocab;
  c.padded_vocab = vocab;
  absl::Status valid = c.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": describes no model loom can build: ", valid.message()));
  }
  return c;
}

// A file name an index may name: a plain name inside the directory.
bool PlainName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && !absl::StrContains(name, "/");
}

struct FoundTensor {
  SafetensorsTensor t;
  std::string file;
};

}  // namespace

bool IsHfModelDir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(fs::path(path) / kConfig, ec);
}

absl::StatusOr<std::unique_ptr<ModelFileReader>> OpenHfModelDir(const std::string& dir) {
  const fs::path root(dir);
  std::error_code ec;
  const std::string config_path = (root / kConfig).string();
  if (!fs::exists(config_path, ec)) {
    return absl::NotFoundError(absl::StrCat(
        dir, " is a directory without ", kConfig,
        ": not a Hugging Face model directory (a checkpoint directory holds a manifest)"));
  }
  LOOM_ASSIGN_OR_RETURN(JsonObject json, ReadJson(config_path));
  std::string arch;
  LOOM_ASSIGN_OR_RETURN(GptConfig c, ConfigFromJson(json, config_path, &arch));

  // The weights files: model.safetensors (transformers' first choice), else the index's shards.
  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;  // from the index
  std::string listing;                            // what named the files, for errors
  if (fs::exists(root / kSingle, ec)) {
    files.push_back(kSingle);
    listing = (root / kSingle).string();
  } else if (fs::exists(root / kIndex, ec)) {
    listing = (root / kIndex).string();
    LOOM_ASSIGN_OR_RETURN(JsonObject index, ReadJson(listing));
    const Value* map = index.Find("weight_map");
    if (map == nullptr || !map->has_struct_value()) {
      return absl::InvalidArgumentError(absl::StrCat(listing, ": no \"weight_map\" object"));
    }
    std::set<std::string> seen;
    for (const auto& [tensor, file] : map->struct_value().fields()) {
      if (file.kind_case() != Value::kStringValue || !PlainName(file.string_value())) {
        return absl::InvalidArgumentError(absl::StrCat(
            listing, ": weight_map names no plain file in the directory for tensor ", tensor));
      }
      weight_map[tensor] = file.string_value();
      if (seen.insert(file.string_value()).second) files.push_back(file.string_value());
    }
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": neither ", kSingle, " nor ", kIndex,
                                            " (loom reads safetensors weights only)"));
  }

  auto reader = std::make_unique<ModelFileReader>(dir, "", c);
  std::map<std::string, FoundTensor> tensors;
  std::set<std::string> dtypes;
  for (const std::string& name : files) {
    const std::string path = (root / name).string();
    LOOM_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
    const MappedFile& kept = reader->Keep(std::move(mapped));
    LOOM_ASSIGN_OR_RETURN(auto in_file, ParseSafetensors(kept));
    for (auto& [tensor, t] : in_file) {
      if (!weight_map.empty()) {
        auto w = weight_map.find(tensor);
        if (w == weight_map.end() || w->second != name) continue;  // the index names another
      }
      tensors[tensor] = {t, path};
    }
  }
  for (const auto& [tensor, file] : weight_map) {
    if (!tensors.count(tensor)) {
      return absl::DataLossError(absl::StrCat(listing, " places tensor ", tensor, " in ", file,
                                              ", which does not hold it"));
    }
  }

  // Which stored tensors make each of loom's parameters; both prefixes transformers writes.
  const std::string head_prefix = c.is_llama() ? "model." : "transformer.";
  const std::string probe = c.is_llama() ? "embed_tokens.weight" : "wte.weight";
  const std::string prefix = tensors.count(head_prefix + probe) ? head_prefix
                             : tensors.count(probe)             ? ""
                                                                : head_prefix;
  std::set<std::string> used;
  for (const HfParam& hp : HfPlan(c, prefix)) {
    StoredParam sp;
    for (const HfPart& part : hp.parts) {
      auto it = tensors.find(part.name);
      if (it == tensors.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(listing, " has no tensor ", part.name, ": the ", arch, " that ",
                         config_path, " describes (", c.layers, " layers",
                         c.tied_embeddings ? ", tied head" : ", untied head",
                         ") needs it for loom's ", hp.loom));
      }
      const FoundTensor& f = it->second;
      auto dtype = SafetensorsDType(f.t.dtype);
      if (!dtype.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(f.file, ": tensor ", part.name, ": ", dtype.status().message()));
      }
      if (f.t.shape != part.StoredShape()) {
        return absl::InvalidArgumentError(absl::StrCat(
            f.file, ": tensor ", part.name, " has shape [", absl::StrJoin(f.t.shape, ", "),
            "], but ", config_path, " implies [", absl::StrJoin(part.StoredShape(), ", "), "]",
            part.transposed ? " (a Conv1D weight, stored [in, out])" : ""));
      }
      StoredPart sp_part;
      sp_part.file = f.file;
      sp_part.tensor = part.name;
      sp_part.data = f.t.data;
      sp_part.dtype = *dtype;
      sp_part.rows = part.rows;
      sp_part.cols = part.cols == 0 ? 1 : part.cols;
      sp_part.transposed = part.transposed;
      sp.rows += part.rows;
      sp.cols = sp_part.cols;
      sp.parts.push_back(std::move(sp_part));
      dtypes.insert(f.t.dtype);
      used.insert(part.name);
    }
    reader->Add(hp.loom, std::move(sp));
  }
  std::vector<std::string> unknown;
  for (const auto& [name, f] : tensors) {
    if (!used.count(name) && !Ignorable(name, c)) unknown.push_back(name);
  }
  if (!unknown.empty()) {
    const size_t shown = std::min<size_t>(unknown.size(), 6);
    return absl::InvalidArgumentError(absl::StrCat(
        listing, " holds ", unknown.size(), " tensor(s) the ", arch, " of ", config_path,
        " has no place for: ", absl::StrJoin(unknown.begin(), unknown.begin() + shown, ", "),
        unknown.size() > shown ? ", ..." : "", " (another architecture or more layers?)"));
  }
  reader->set_format(
      absl::StrCat("Hugging Face ", arch, " (", absl::StrJoin(dtypes, "+"),
                   files.size() > 1 ? absl::StrCat(", ", files.size(), " shards") : "", ")"));
  return reader;
}

absl::Status WriteHfModelDir(const std::string& dir, const GptConfig& c,
                             const std::vector<float>& params, const HfWriteOptions& options) {
  if (options.dtype != DType::kF32 && options.dtype != DType::kBF16 &&
      options.dtype != DType::kF16) {
    return absl::InvalidArgumentError("Hugging Face export: dtype must be f32, bf16 or f16");
  }
  const ParamTable layout = GptParamLayout(c);
  if (static_cast<int64_t>(params.size()) != layout.total()) {
    return absl::InvalidArgumentError(absl::StrCat("Hugging Face export: ", params.size(),
                                                   " values for a model of ", layout.total()));
  }
  // Each stored tensor cut from loom's global tensor: its rows (the real vocabulary only),
  // transposed where transformers stores [in, out].
  std::vector<SafetensorsOut> out;
  for (const HfParam& hp : HfPlan(c, c.is_llama() ? "model." : "transformer.")) {
    LOOM_ASSIGN_OR_RETURN(const ParamSpec* s, layout.Find(hp.loom));
    const int64_t cols = s->global_shape.dims().size() == 2 ? s->global_shape.dims()[1] : 1;
    const float* src = params.data() + s->offset;
    int64_t row0 = 0;
    for (const HfPart& part : hp.parts) {
      SafetensorsOut t;
      t.name = part.name;
      t.shape = part.StoredShape();
      const int64_t pc = part.cols == 0 ? 1 : part.cols;
      if (pc != cols) return absl::InternalError(absl::StrCat("HF plan: ", part.name, " columns"));
      t.values.resize(part.rows * pc);
      for (int64_t r = 0; r < part.rows; ++r) {
        for (int64_t col = 0; col < pc; ++col) {
          const float v = src[(row0 + r) * cols + col];
          t.values[part.transposed ? col * part.rows + r : r * pc + col] = v;
        }
      }
      row0 += part.rows;
      out.push_back(std::move(t));
    }
  }

  const char* torch_dtype = options.dtype == DType::kBF16  ? "bfloat16"
                            : options.dtype == DType::kF16 ? "float16"
                                                           : "float32";
  std::string json;
  auto field = [&json](const std::string& key, const std::string& value) {
    absl::StrAppend(&json, json.empty() ? "{\n" : ",\n", "  \"", key, "\": ", value);
  };
  field("architectures", absl::StrCat("[\"", ArchitectureOf(c), "\"]"));
  field("model_type", c.is_llama() ? "\"llama\"" : "\"gpt2\"");
  field("vocab_size", absl::StrCat(c.vocab));
  if (c.is_llama()) {
    field("hidden_size", absl::StrCat(c.hidden));
    field("intermediate_size", absl::StrCat(c.ffn_hidden));
    field("num_hidden_layers", absl::StrCat(c.layers));
    field("num_attention_heads", absl::StrCat(c.heads));
    field("num_key_value_heads", absl::StrCat(c.kv_heads));
    field("max_position_embeddings", absl::StrCat(c.max_seq));
    field("rms_norm_eps", FloatJson(c.norm_eps));
    field("rope_theta", FloatJson(c.rope_theta));
    field("rope_scaling", "null");
    field("hidden_act", "\"silu\"");
    field("attention_bias", "false");
    field("mlp_bias", "false");
  } else {
    field("n_embd", absl::StrCat(c.hidden));
    field("n_layer", absl::StrCat(c.layers));
    field("n_head", absl::StrCat(c.heads));
    field("n_positions", absl::StrCat(c.max_seq));
    field("n_inner", c.ffn_hidden == 4 * c.hidden ? "null" : absl::StrCat(c.ffn_hidden));
    field("activation_function", "\"gelu_new\"");
    field("layer_norm_epsilon", FloatJson(c.norm_eps));
    field("resid_pdrop", "0.0");
    field("embd_pdrop", "0.0");
    field("attn_pdrop", "0.0");
  }
  field("tie_word_embeddings", c.tied_embeddings ? "true" : "false");
  field("torch_dtype", absl::StrCat("\"", torch_dtype, "\""));
  json += "\n}\n";

  LOOM_RETURN_IF_ERROR(MakeDirs(dir));
  const fs::path root(dir);
  // One model per directory: weights an earlier export left would be read instead (a
  // model.safetensors wins over an index) or beside these.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == kConfig || name == kSingle || name == kIndex ||
        (absl::StartsWith(name, "model-") && absl::EndsWith(name, ".safetensors"))) {
      fs::remove(entry.path(), ec);
      if (ec) return absl::InternalError(absl::StrCat("cannot remove ", entry.path().string()));
    }
  }
  // Shards in order, each up to max_shard_bytes (a tensor larger than that gets one alone).
  const int64_t elem = static_cast<int64_t>(DTypeSize(options.dtype));
  std::vector<std::vector<SafetensorsOut>> shards(1);
  int64_t in_shard = 0, total = 0;
  for (SafetensorsOut& t : out) {
    const int64_t bytes = static_cast<int64_t>(t.values.size()) * elem;
    total += bytes;
    if (options.max_shard_bytes > 0 && in_shard > 0 && in_shard + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    in_shard += bytes;
    shards.back().push_back(std::move(t));
  }
  if (shards.size() == 1) {
    LOOM_RETURN_IF_ERROR(
        AtomicWriteFile((root / kSingle).string(), EncodeSafetensors(shards[0], options.dtype)));
  } else {
    std::string index =
        absl::StrCat("{\n  \"metadata\": {\"total_size\": ", total, "},\n  \"weight_map\": {");
    bool first = true;
    for (size_t k = 0; k < shards.size(); ++k) {
      const std::string name =
          absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, shards.size());
      LOOM_RETURN_IF_ERROR(
          AtomicWriteFile((root / name).string(), EncodeSafetensors(shards[k], options.dtype)));
      for (const SafetensorsOut& t : shards[k]) {
        absl::StrAppend(&index, first ? "\n" : ",\n", "    \"", t.name, "\": \"", name, "\"");
        first = false;
      }
    }
    index += "\n  }\n}\n";
    LOOM_RETURN_IF_ERROR(AtomicWriteFile((root / kIndex).string(), index));
  }
  // config.json last: a directory without it is no model, so a failed export is not read.
  return AtomicWriteFile((root / kConfig).string(), json);
}

}  // namespace loom
