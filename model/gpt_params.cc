#include "model/gpt_params.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace loom {

namespace {

class Builder {
 public:
  void Add(std::string name, Shape shape, TpSplit split, InitKind init, float std, bool decay,
           std::vector<int64_t> parts = {}, int64_t zero_rows_from = -1, int64_t unit = 1) {
    ParamDesc d;
    d.name = std::move(name);
    d.shape = std::move(shape);
    d.split = split;
    d.parts = std::move(parts);
    d.init = init;
    d.std = std;
    d.decay = decay;
    d.zero_rows_from = zero_rows_from;
    d.split_unit = unit;
    descs.push_back(std::move(d));
  }
  std::vector<ParamDesc> descs;
};

}  // namespace

absl::StatusOr<GptStage> ResolveGptStage(const GptConfig& config, const GptStage& stage) {
  if (stage.chunks.empty()) {
    GptStage whole = stage;
    whole.chunks = {{0, config.layers}};
    return whole;
  }
  for (size_t i = 0; i < stage.chunks.size(); ++i) {
    const GptStage::Chunk& ch = stage.chunks[i];
    if (ch.first_layer < 0 || ch.layers < (config.layers > 0 ? 1 : 0) ||
        ch.first_layer + ch.layers > config.layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pipeline chunk ", i, " holds layers [", ch.first_layer, ", ",
          ch.first_layer + ch.layers, "), not a non-empty range of the model's ", config.layers,
          " layers"));
    }
  }
  return stage;
}

GptStage PipelineStageOf(int pp, int stage, const std::vector<int>& chunk_layers) {
  GptStage st;
  const int chunks = pp > 0 ? static_cast<int>(chunk_layers.size()) / pp : 0;
  std::vector<int> first(chunk_layers.size() + 1, 0);
  for (size_t k = 0; k < chunk_layers.size(); ++k) first[k + 1] = first[k] + chunk_layers[k];
  for (int c = 0; c < chunks; ++c) {
    const int k = c * pp + stage;
    st.chunks.push_back({first[k], chunk_layers[k]});
  }
  st.embedding = stage == 0;
  st.head = stage == pp - 1;
  return st;
}

std::vector<ParamDesc> GptParamDescs(const GptConfig& c, const GptStage& stage_in) {
  GptStage stage = stage_in;
  if (stage.chunks.empty()) stage.chunks = {{0, c.layers}};
  Builder b;
  const int64_t C = c.hidden, F = c.ffn_hidden, Vp = c.padded_vocab, hd = c.head_dim();
  const std::vector<int64_t> qkv_parts = {c.heads * hd, c.kv_heads * hd, c.kv_heads * hd};
  const float std = 0.02f;
  // Residual projections are scaled by 1/sqrt(2 * layers) (GPT-2): each block adds two of them
  // to the residual stream, so this keeps its variance independent of depth.
  const float proj_std = std / std::sqrt(2.0f * c.layers);
  const auto kN = InitKind::kNormal, kOnes = InitKind::kOnes, kZeros = InitKind::kZeros;
  const auto kRep = TpSplit::kReplicated, kCol = TpSplit::kColumn, kRow = TpSplit::kRow;
  if (stage.embedding || (stage.head && c.tied_embeddings)) {
    b.Add("wte.weight", Shape{Vp, C}, TpSplit::kVocab, kN, std, true, {}, c.vocab);
    // The last stage's LM head is a copy of the first stage's embedding.
    b.descs.back().tied_copy = !stage.embedding;
  }
  if (!c.is_llama() && stage.embedding) {
    b.Add("wpe.weight", Shape{c.max_seq, C}, kRep, kN, std, true);
  }
  std::vector<int> layers;
  for (const GptStage::Chunk& ch : stage.chunks) {
    for (int l = ch.first_layer; l < ch.first_layer + ch.layers; ++l) layers.push_back(l);
  }
  for (int i : layers) {
    std::string p = absl::StrCat("blocks.", i, ".");
    if (c.is_llama()) {
      b.Add(p + "attn_norm.weight", Shape{C}, kRep, kOnes, 0, false);
      b.Add(p + "attn.qkv.weight", Shape{c.qkv_dim(), C}, kCol, kN, std, true, qkv_parts, -1, hd);
      b.Add(p + "attn.proj.weight", Shape{C, C}, kRow, kN, proj_std, true);
      b.Add(p + "mlp_norm.weight", Shape{C}, kRep, kOnes, 0, false);
      b.Add(p + "mlp.gate_up.weight", Shape{2 * F, C}, kCol, kN, std, true, {F, F});
      b.Add(p + "mlp.down.weight", Shape{C, F}, kRow, kN, proj_std, true);
    } else {
      b.Add(p + "ln1.weight", Shape{C}, kRep, kOnes, 0, false);
      b.Add(p + "ln1.bias", Shape{C}, kRep, kZeros, 0, false);
      b.Add(p + "attn.qkv.weight", Shape{c.qkv_dim(), C}, kCol, kN, std, true, qkv_parts, -1, hd);
      b.Add(p + "attn.qkv.bias", Shape{c.qkv_dim()}, kCol, kZeros, 0, false, qkv_parts, -1, hd);
      b.Add(p + "attn.proj.weight", Shape{C, C}, kRow, kN, proj_std, true);
      b.Add(p + "attn.proj.bias", Shape{C}, kRep, kZeros, 0, false);
      b.Add(p + "ln2.weight", Shape{C}, kRep, kOnes, 0, false);
      b.Add(p + "ln2.bias", Shape{C}, kRep, kZeros, 0, false);
      b.Add(p + "mlp.fc.weight", Shape{F, C}, kCol, kN, std, true);
      b.Add(p + "mlp.fc.bias", Shape{F}, kCol, kZeros, 0, false);
      b.Add(p + "mlp.proj.weight", Shape{C, F}, kRow, kN, proj_std, true);
      b.Add(p + "mlp.proj.bias", Shape{C}, kRep, kZeros, 0, false);
    }
  }
  if (!stage.head) return b.descs;
  if (c.is_llama()) {
    b.Add("final_norm.weight", Shape{C}, kRep, kOnes, 0, false);
  } else {
    b.Add("ln_f.weight", Shape{C}, kRep, kOnes, 0, false);
    b.Add("ln_f.bias", Shape{C}, kRep, kZeros, 0, false);
  }
  if (!c.tied_embeddings) {
    b.Add("lm_head.weight", Shape{Vp, C}, TpSplit::kVocab, kN, std, true, {}, c.vocab);
  }
  return b.descs;
}

absl::StatusOr<ParamTable> GptParamTable(const GptConfig& config, int tp, int tp_rank,
                                         const GptStage& stage) {
  LOOM_ASSIGN_OR_RETURN(GptStage resolved, ResolveGptStage(config, stage));
  return ParamTable::Create(GptParamDescs(config, resolved), tp, tp_rank);
}

int64_t GptParameterCount(const GptConfig& config) {
  GptConfig c = config;
  c.padded_vocab = c.vocab;
  if (c.heads <= 0) c.heads = c.kv_heads = 1;  // an invalid shape still gets a number
  auto count = [&c](int layers) {
    GptConfig d = c;
    d.layers = layers;
    int64_t n = 0;
    for (const ParamDesc& p : GptParamDescs(d)) n += p.shape.numel();
    return n;
  };
  const int64_t outside = count(0);
  return outside + static_cast<int64_t>(config.layers) * (count(1) - outside);
}

ParamTable GptParamLayout(const GptConfig& config) {
  return *ParamTable::Create(GptParamDescs(config), 1, 0);
}

absl::StatusOr<GptParamRefs> ResolveGptParams(const GptConfig& c, const GptStage& stage,
                                              const ParamTable& table) {
  const std::vector<ParamSpec>& specs = table.specs();
  std::unordered_map<std::string, int> index;
  for (size_t i = 0; i < specs.size(); ++i) index.emplace(specs[i].name, static_cast<int>(i));
  std::vector<bool> read(specs.size(), false);
  std::vector<std::string> missing;
  auto ref = [&](const std::string& name) {
    auto it = index.find(name);
    if (it == index.end()) {
      missing.push_back(name);
      return ParamRef{};
    }
    read[it->second] = true;
    return ParamRef{it->second};
  };
  const bool llama = c.is_llama();
  GptParamRefs r;
  r.layers.resize(c.layers > 0 ? c.layers : 0);
  if (stage.embedding) {
    r.wte = ref("wte.weight");
    if (!llama) r.wpe = ref("wpe.weight");
  }
  for (const GptStage::Chunk& ch : stage.chunks) {
    for (int l = ch.first_layer; l < ch.first_layer + ch.layers; ++l) {
      if (l < 0 || l >= static_cast<int>(r.layers.size())) {
        return absl::InternalError(absl::StrCat("GptModel: layer ", l,
                                                " of the stage is not one "
                                                "of the model's ",
                                                c.layers));
      }
      const std::string p = absl::StrCat("blocks.", l, ".");
      GptParamRefs::Layer& L = r.layers[l];
      if (llama) {
        L.norm1_w = ref(p + "attn_norm.weight");
        L.qkv_w = ref(p + "attn.qkv.weight");
        L.proj_w = ref(p + "attn.proj.weight");
        L.norm2_w = ref(p + "mlp_norm.weight");
        L.fc_w = ref(p + "mlp.gate_up.weight");
        L.out_w = ref(p + "mlp.down.weight");
      } else {
        L.norm1_w = ref(p + "ln1.weight");
        L.norm1_b = ref(p + "ln1.bias");
        L.qkv_w = ref(p + "attn.qkv.weight");
        L.qkv_b = ref(p + "attn.qkv.bias");
        L.proj_w = ref(p + "attn.proj.weight");
        L.proj_b = ref(p + "attn.proj.bias");
        L.norm2_w = ref(p + "ln2.weight");
        L.norm2_b = ref(p + "ln2.bias");
        L.fc_w = ref(p + "mlp.fc.weight");
        L.fc_b = ref(p + "mlp.fc.bias");
        L.out_w = ref(p + "mlp.proj.weight");
        L.out_b = ref(p + "mlp.proj.bias");
      }
    }
  }
  if (stage.head) {
    if (llama) {
      r.final_norm_w = ref("final_norm.weight");
    } else {
      r.final_norm_w = ref("ln_f.weight");
      r.final_norm_b = ref("ln_f.bias");
    }
    // A tied head reads the embedding (on a stage without it: the stage's copy of it).
    r.head = ref(c.tied_embeddings ? "wte.weight" : "lm_head.weight");
  }
  std::vector<std::string> unread;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!read[i]) unread.push_back(specs[i].name);
  }
  auto some = [](const std::vector<std::string>& names) {
    constexpr size_t kShown = 8;
    std::vector<std::string> shown(names.begin(), names.begin() + std::min(names.size(), kShown));
    return absl::StrCat(
        "'", absl::StrJoin(shown, "', '"), "'",
        names.size() > kShown ? absl::StrCat(" and ", names.size() - kShown, " more") : "");
  };
  if (!missing.empty()) {
    return absl::InternalError(absl::StrCat("GptModel: the parameter table lacks ", some(missing),
                                            ", which the ", llama ? "LLaMA" : "GPT-2",
                                            " model reads"));
  }
  if (!unread.empty()) {
    return absl::InternalError(absl::StrCat("GptModel: the parameter table holds ", some(unread),
                                            ", which the ", llama ? "LLaMA" : "GPT-2",
                                            " model never reads"));
  }
  return r;
}

}  // namespace loom
