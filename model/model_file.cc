#include "model/model_file.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/dtype.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<LoadedWeights> ReadModelFileUnchecked(const std::string& path);

namespace {

constexpr int kHeaderInts = 256;

// A header's model must be valid, and small enough for the file to hold it (every layer has at
// least `hidden` elements): checked before the layout is built, so a corrupt header cannot ask
// for billions of layers.
absl::Status CheckHeaderModel(const std::string& path, const GptConfig& c, size_t size,
                              size_t elem) {
  absl::Status valid = c.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the header describes no valid model: ", valid.message()));
  }
  if (static_cast<double>(c.layers) * c.hidden * elem > static_cast<double>(size)) {
    return absl::DataLossError(absl::StrCat(path, ": file is ", size, " bytes, too short for the ",
                                            c.layers, " layers of hidden ", c.hidden,
                                            " its header describes"));
  }
  return absl::OkStatus();
}

// llm.c's 16 GPT-2 tensors in file order: our per-layer name suffix (or global name) and
// whether the tensor is stacked over layers.
struct LlmcTensor {
  const char* name;
  bool per_layer;
};
constexpr LlmcTensor kLlmcOrder[] = {
    {"wte.weight", false},      {"wpe.weight", false},       {"ln1.weight", true},
    {"ln1.bias", true},         {"attn.qkv.weight", true},   {"attn.qkv.bias", true},
    {"attn.proj.weight", true}, {"attn.proj.bias", true},    {"ln2.weight", true},
    {"ln2.bias", true},         {"mlp.fc.weight", true},     {"mlp.fc.bias", true},
    {"mlp.proj.weight", true},  {"mlp.proj.bias", true},     {"ln_f.weight", false},
    {"ln_f.bias", false}};

float IntBitsToFloat(int32_t v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}
int32_t FloatToIntBits(float f) {
  int32_t v;
  std::memcpy(&v, &f, 4);
  return v;
}

// Walks llm.c's order, calling fn(global spec, layer-stacked chunk index) for each chunk.
template <typename Fn>
absl::Status ForEachLlmcChunk(const ParamTable& layout, int layers, Fn fn) {
  for (const LlmcTensor& t : kLlmcOrder) {
    int reps = t.per_layer ? layers : 1;
    for (int l = 0; l < reps; ++l) {
      std::string name = t.per_layer ? absl::StrCat("blocks.", l, ".", t.name) : t.name;
      LOOM_ASSIGN_OR_RETURN(const ParamSpec* s, layout.Find(name));
      fn(*s);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadedWeights> ReadLlmc(const std::string& path, const int32_t* h,
                                       const char* data, size_t size) {
  const int version = h[1];
  if (version != 3 && version != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": llm.c model version ", version, " is not supported (expected 3 = fp32 or 5 = bf16)"));
  }
  LoadedWeights w;
  GptConfig& c = w.config;
  c.family = ModelFamily::kGpt2;
  c.max_seq = h[2];
  c.vocab = h[3];
  c.layers = h[4];
  c.heads = h[5];
  c.kv_heads = h[5];
  c.hidden = h[6];
  c.padded_vocab = h[7];
  // In int64 and saturated: the header's hidden is any int32 until CheckHeaderModel refuses it
  // (4 * hidden overflowed int for hidden >= 2^29: found by tests/fuzz/model_file_fuzz).
  c.ffn_hidden = static_cast<int>(std::min<int64_t>(int64_t{4} * c.hidden, INT32_MAX));
  c.tied_embeddings = true;
  const size_t elem = version == 3 ? 4 : 2;
  LOOM_RETURN_IF_ERROR(CheckHeaderModel(path, c, size, elem));
  ParamTable layout = GptParamLayout(c);
  const size_t need = kHeaderInts * 4 + static_cast<size_t>(layout.total()) * elem;
  if (size < need) {
    return absl::DataLossError(absl::StrCat(path, ": file is ", size, " bytes, but its header (L=",
                                            c.layers, ", C=", c.hidden, ", Vp=", c.padded_vocab,
                                            ") needs ", need));
  }
  w.params.resize(layout.total());
  size_t pos = 0;  // elements read so far
  const char* body = data + kHeaderInts * 4;
  LOOM_RETURN_IF_ERROR(ForEachLlmcChunk(layout, c.layers, [&](const ParamSpec& s) {
    float* dst = w.params.data() + s.offset;
    for (int64_t i = 0; i < s.numel(); ++i, ++pos) {
      if (version == 3) {
        std::memcpy(&dst[i], body + pos * 4, 4);
      } else {
        uint16_t b;
        std::memcpy(&b, body + pos * 2, 2);
        dst[i] = Bf16BitsToFloat(b);
      }
    }
  }));
  return w;
}

absl::StatusOr<LoadedWeights> ReadLoom(const std::string& path, const int32_t* h, const char* data,
                                       size_t size) {
  if (h[1] != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": loom model file version ", h[1], " is not supported (expected 1)"));
  }
  LoadedWeights w;
  GptConfig& c = w.config;
  if (h[2] != 0 && h[2] != 1) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unknown model family ", h[2]));
  }
  c.family = h[2] == 1 ? ModelFamily::kLlama : ModelFamily::kGpt2;
  if (h[12] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": parameter dtype code ", h[12], " is not supported (expected 0 = f32)"));
  }
  c.layers = h[3];
  c.heads = h[4];
  c.kv_heads = h[5];
  c.hidden = h[6];
  c.ffn_hidden = h[7];
  c.vocab = h[8];
  c.padded_vocab = h[9];
  c.max_seq = h[10];
  c.tied_embeddings = h[11] != 0;
  c.norm_eps = IntBitsToFloat(h[13]);
  c.rope_theta = IntBitsToFloat(h[14]);
  LOOM_RETURN_IF_ERROR(CheckHeaderModel(path, c, size, 4));
  ParamTable layout = GptParamLayout(c);
  const size_t need = kHeaderInts * 4 + static_cast<size_t>(layout.total()) * 4;
  if (size != need) {
    return absl::DataLossError(absl::StrCat(path, ": file is ", size,
                                            " bytes, but its header describes ", need));
  }
  w.params.resize(layout.total());
  std::memcpy(w.params.data(), data + kHeaderInts * 4, layout.total() * 4);
  return w;
}

}  // namespace

// Non-finite weights would make the first step's loss NaN, and the divergence message would
// then blame the learning rate: refused here, naming the file and the tensor.
absl::Status CheckFiniteWeights(const std::string& path, const LoadedWeights& w) {
  const ParamTable layout = GptParamLayout(w.config);
  for (const ParamSpec& s : layout.specs()) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < s.numel(); ++i) {
      if (!std::isfinite(w.params[s.offset + i])) {
        if (bad++ == 0) first = i;
      }
    }
    if (bad > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor ", s.name, " holds ", bad, " non-finite value(s) (NaN or Inf; the first, ",
          w.params[s.offset + first], ", at element ", first, " of ", s.numel(),
          "); these weights cannot be trained from"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadedWeights> ReadModelFile(const std::string& path) {
  auto w = ReadModelFileUnchecked(path);
  if (w.ok()) LOOM_RETURN_IF_ERROR(CheckFiniteWeights(path, *w));
  return w;
}

absl::StatusOr<LoadedWeights> ReadModelFileUnchecked(const std::string& path) {
  LOOM_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  if (file.size() < kHeaderInts * 4) {
    return absl::DataLossError(absl::StrCat(path, ": file is ", file.size(),
                                            " bytes, shorter than the 1024-byte header"));
  }
  const char* data = reinterpret_cast<const char*>(file.data());
  int32_t h[kHeaderInts];
  std::memcpy(h, data, sizeof(h));
  if (h[0] == kLlmcModelMagic) return ReadLlmc(path, h, data, file.size());
  if (h[0] == kLoomModelMagic) return ReadLoom(path, h, data, file.size());
  return absl::InvalidArgumentError(absl::StrCat(path, ": bad magic ", h[0], " (expected ",
                                                 kLlmcModelMagic, " for an llm.c GPT-2 file or ",
                                                 kLoomModelMagic, " for a loom model file)"));
}

absl::Status WriteLlmcModelFile(const std::string& path, const GptConfig& c,
                                const std::vector<float>& params, bool bf16) {
  if (c.is_llama() || !c.tied_embeddings || c.ffn_hidden != 4 * c.hidden) {
    return absl::InvalidArgumentError(
        "llm.c's format holds GPT-2 models only (GPT2 family, tied embeddings, ffn = 4 * hidden)");
  }
  ParamTable layout = GptParamLayout(c);
  if (static_cast<int64_t>(params.size()) != layout.total()) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", layout.total(), " parameters, got ",
                                                   params.size()));
  }
  int32_t h[kHeaderInts] = {};
  h[0] = kLlmcModelMagic;
  h[1] = bf16 ? 5 : 3;
  h[2] = c.max_seq;
  h[3] = static_cast<int32_t>(c.vocab);
  h[4] = c.layers;
  h[5] = c.heads;
  h[6] = c.hidden;
  h[7] = static_cast<int32_t>(c.padded_vocab);
  std::string bytes(reinterpret_cast<const char*>(h), sizeof(h));
  bytes.reserve(sizeof(h) + params.size() * (bf16 ? 2 : 4));
  LOOM_RETURN_IF_ERROR(ForEachLlmcChunk(layout, c.layers, [&](const ParamSpec& s) {
    const float* src = params.data() + s.offset;
    for (int64_t i = 0; i < s.numel(); ++i) {
      if (bf16) {
        uint16_t b = FloatToBf16Bits(src[i]);
        bytes.append(reinterpret_cast<const char*>(&b), 2);
      } else {
        bytes.append(reinterpret_cast<const char*>(&src[i]), 4);
      }
    }
  }));
  return AtomicWriteFile(path, bytes);
}

absl::Status WriteLoomModelFile(const std::string& path, const GptConfig& c,
                                const std::vector<float>& params) {
  ParamTable layout = GptParamLayout(c);
  if (static_cast<int64_t>(params.size()) != layout.total()) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", layout.total(), " parameters, got ",
                                                   params.size()));
  }
  int32_t h[kHeaderInts] = {};
  h[0] = kLoomModelMagic;
  h[1] = 1;
  h[2] = c.is_llama() ? 1 : 0;
  h[3] = c.layers;
  h[4] = c.heads;
  h[5] = c.kv_heads;
  h[6] = c.hidden;
  h[7] = c.ffn_hidden;
  h[8] = static_cast<int32_t>(c.vocab);
  h[9] = static_cast<int32_t>(c.padded_vocab);
  h[10] = c.max_seq;
  h[11] = c.tied_embeddings ? 1 : 0;
  h[12] = 0;  // f32
  h[13] = FloatToIntBits(c.norm_eps);
  h[14] = FloatToIntBits(c.rope_theta);
  std::string bytes(reinterpret_cast<const char*>(h), sizeof(h));
  bytes.append(reinterpret_cast<const char*>(params.data()), params.size() * 4);
  return AtomicWriteFile(path, bytes);
}

absl::Status CheckSameShape(const GptConfig& job, const GptConfig& file, const std::string& path) {
  const std::vector<std::string> diffs = GptConfigDifferences(
      job, file, "job has", "file has", /*with_padding=*/true, /*with_numerics=*/false);
  if (diffs.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("model.init_from ", path,
                                                 " does not fit the job's model: ",
                                                 absl::StrJoin(diffs, "; ")));
}

}  // namespace loom
