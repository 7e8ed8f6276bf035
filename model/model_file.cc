#include "model/model_file.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/slices.h"
#include "model/hf_format.h"
#include "runtime/dtype.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {

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
    {"wte.weight", false},      {"wpe.weight", false},     {"ln1.weight", true},
    {"ln1.bias", true},         {"attn.qkv.weight", true}, {"attn.qkv.bias", true},
    {"attn.proj.weight", true}, {"attn.proj.bias", true},  {"ln2.weight", true},
    {"ln2.bias", true},         {"mlp.fc.weight", true},   {"mlp.fc.bias", true},
    {"mlp.proj.weight", true},  {"mlp.proj.bias", true},   {"ln_f.weight", false},
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

// A parameter stored whole and untransposed at `data`, in loom's global shape `s` (stored
// with `stored_rows` rows along dim 0: an llm.c or loom file's own padded vocabulary) of which
// the first `real_rows` are read.
StoredParam WholeParam(const std::string& path, const ParamSpec& s, const uint8_t* data,
                       DType dtype, int64_t real_rows) {
  StoredPart part;
  part.file = path;
  part.tensor = s.name;
  part.data = data;
  part.dtype = dtype;
  const std::vector<int64_t>& d = s.global_shape.dims();
  part.rows = d[0];
  part.cols = d.size() == 2 ? d[1] : 1;
  StoredParam p;
  p.rows = real_rows;
  p.cols = part.cols;
  p.parts.push_back(std::move(part));
  return p;
}

// Rows of `s` that hold values: the real vocabulary of a padded embedding or head, else all.
int64_t RealRows(const ParamSpec& s) {
  return s.zero_rows_from >= 0 ? s.zero_rows_from : s.global_shape.dims()[0];
}

absl::StatusOr<std::unique_ptr<ModelFileReader>> OpenLlmc(const std::string& path, const int32_t* h,
                                                          MappedFile file) {
  const size_t size = file.size();
  const int version = h[1];
  if (version != 3 && version != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": llm.c model version ", version,
                     " is not supported (expected 3 = fp32 or 5 = bf16)"));
  }
  GptConfig c;
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
    return absl::DataLossError(
        absl::StrCat(path, ": file is ", size, " bytes, but its header (L=", c.layers,
                     ", C=", c.hidden, ", Vp=", c.padded_vocab, ") needs ", need));
  }
  auto reader = std::make_unique<ModelFileReader>(
      path, version == 3 ? "llm.c GPT-2 (fp32)" : "llm.c GPT-2 (bf16)", c);
  const uint8_t* body = reader->Keep(std::move(file)).data() + kHeaderInts * 4;
  size_t pos = 0;  // elements before the tensor in llm.c's order
  LOOM_RETURN_IF_ERROR(ForEachLlmcChunk(layout, c.layers, [&](const ParamSpec& s) {
    reader->Add(s.name, WholeParam(path, s, body + pos * elem,
                                   version == 3 ? DType::kF32 : DType::kBF16, RealRows(s)));
    pos += s.numel();
  }));
  return reader;
}

absl::StatusOr<std::unique_ptr<ModelFileReader>> OpenLoom(const std::string& path, const int32_t* h,
                                                          MappedFile file) {
  const size_t size = file.size();
  if (h[1] != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": loom model file version ", h[1], " is not supported (expected 1)"));
  }
  GptConfig c;
  if (h[2] != 0 && h[2] != 1) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unknown model family ", h[2]));
  }
  c.family = h[2] == 1 ? ModelFamily::kLlama : ModelFamily::kGpt2;
  if (h[12] != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": parameter dtype code ", h[12],
                                                   " is not supported (expected 0 = f32)"));
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
    return absl::DataLossError(
        absl::StrCat(path, ": file is ", size, " bytes, but its header describes ", need));
  }
  auto reader = std::make_unique<ModelFileReader>(path, "loom model file", c);
  const uint8_t* body = reader->Keep(std::move(file)).data() + kHeaderInts * 4;
  for (const ParamSpec& s : layout.specs()) {
    reader->Add(s.name, WholeParam(path, s, body + s.offset * 4, DType::kF32, RealRows(s)));
  }
  return reader;
}

float StoredValue(const StoredPart& p, int64_t index) {
  switch (p.dtype) {
    case DType::kBF16: {
      uint16_t b;
      std::memcpy(&b, p.data + index * 2, 2);
      return Bf16BitsToFloat(b);
    }
    case DType::kF16: {
      uint16_t b;
      std::memcpy(&b, p.data + index * 2, 2);
      return F16BitsToFloat(b);
    }
    default: {
      float f;
      std::memcpy(&f, p.data + index * 4, 4);
      return f;
    }
  }
}

// Columns [c0, c0 + n) of row `row` of part `p` (loom's orientation) into dst.
void ReadPartRow(const StoredPart& p, int64_t row, int64_t c0, int64_t n, float* dst) {
  if (p.transposed) {
    for (int64_t c = 0; c < n; ++c) dst[c] = StoredValue(p, (c0 + c) * p.rows + row);
  } else if (p.dtype == DType::kF32) {
    std::memcpy(dst, p.data + (row * p.cols + c0) * 4, static_cast<size_t>(n) * 4);
  } else {
    for (int64_t c = 0; c < n; ++c) dst[c] = StoredValue(p, row * p.cols + c0 + c);
  }
}

}  // namespace

const MappedFile& ModelFileReader::Keep(MappedFile file) {
  files_.push_back(std::make_unique<MappedFile>(std::move(file)));
  return *files_.back();
}

absl::Status ModelFileReader::ReadBox(const std::string& name, const TensorBox& box,
                                      float* dst) const {
  auto it = params_.find(name);
  if (it == params_.end()) {
    return absl::NotFoundError(
        absl::StrCat(path_, " (", format_, ") holds no tensor for loom's ", name));
  }
  const StoredParam& p = it->second;
  const bool two_d = box.offset.size() == 2;
  const int64_t r0 = box.offset[0], nr = box.extent[0];
  const int64_t c0 = two_d ? box.offset[1] : 0, nc = two_d ? box.extent[1] : 1;
  if (box.offset.size() > 2 || c0 < 0 || c0 + nc > p.cols || r0 < 0) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": box ", BoxString(box), " of ", name,
                                                   " lies outside its stored columns (", p.cols,
                                                   ")"));
  }
  for (int64_t r = 0; r < nr; ++r) {
    float* out = dst + r * nc;
    int64_t row = r0 + r;
    if (row >= p.rows) {  // padding: zero, whatever the file holds there
      std::fill(out, out + nc, 0.0f);
      continue;
    }
    for (const StoredPart& part : p.parts) {
      if (row < part.rows) {
        ReadPartRow(part, row, c0, nc, out);
        break;
      }
      row -= part.rows;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelFileReader>> ModelFileReader::Open(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return OpenHfModelDir(path);
  LOOM_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  if (file.size() < kHeaderInts * 4) {
    return absl::DataLossError(
        absl::StrCat(path, ": file is ", file.size(), " bytes, shorter than the 1024-byte header"));
  }
  int32_t h[kHeaderInts];
  std::memcpy(h, file.data(), sizeof(h));
  if (h[0] == kLlmcModelMagic) return OpenLlmc(path, h, std::move(file));
  if (h[0] == kLoomModelMagic) return OpenLoom(path, h, std::move(file));
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": bad magic ", h[0], " (expected ", kLlmcModelMagic, " for an llm.c GPT-2 file or ",
      kLoomModelMagic,
      " for a loom model file; a Hugging Face model is a directory with config.json)"));
}

absl::StatusOr<std::vector<float>> ReadModelSlices(const ModelFileReader& reader,
                                                   const GptConfig& job, const ParamTable& table) {
  LOOM_RETURN_IF_ERROR(CheckSameShape(job, reader.config(), reader.path()));
  std::vector<float> out(table.total(), 0.0f);
  // The boxes a checkpoint load fills (checkpoint/slices.h), weights only: every piece of every
  // parameter this rank holds, at its place in the flat buffer.
  LOOM_ASSIGN_OR_RETURN(std::vector<Region> regions,
                        NeededRegions(table, OptimizerView{}, /*with_optimizer=*/false));
  for (const Region& r : regions) {
    float* dst = out.data() + r.at;
    LOOM_RETURN_IF_ERROR(reader.ReadBox(r.spec->name, r.box, dst));
    // Non-finite weights would make the first step's loss NaN, and the divergence message would
    // then blame the learning rate: refused here, naming the file and the tensor.
    const int64_t n = r.box.numel();
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(dst[i]) && bad++ == 0) first = i;
    }
    if (bad > 0) {
      auto part = reader.params().find(r.spec->name);
      std::string stored;
      if (part != reader.params().end()) {
        for (const StoredPart& p : part->second.parts) {
          if (p.tensor == r.spec->name) continue;
          absl::StrAppend(&stored, stored.empty() ? " (stored as " : ", ", p.tensor);
        }
        if (!stored.empty()) stored += ")";
      }
      return absl::InvalidArgumentError(absl::StrCat(
          reader.path(), ": tensor ", r.spec->name, stored, " holds ", bad,
          " non-finite value(s) in ", BoxString(r.box), " (NaN or Inf; the first, ", dst[first],
          ", at element ", first, " of that box); these weights cannot be trained from"));
    }
  }
  return out;
}

absl::StatusOr<LoadedWeights> ReadModelFile(const std::string& path) {
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<ModelFileReader> reader, ModelFileReader::Open(path));
  LoadedWeights w;
  w.config = reader->config();
  const ParamTable layout = GptParamLayout(w.config);
  LOOM_ASSIGN_OR_RETURN(w.params, ReadModelSlices(*reader, w.config, layout));
  return w;
}

absl::Status WriteLlmcModelFile(const std::string& path, const GptConfig& c,
                                const std::vector<float>& params, bool bf16) {
  if (c.is_llama() || !c.tied_embeddings || c.ffn_hidden != 4 * c.hidden) {
    return absl::InvalidArgumentError(
        "llm.c's format holds GPT-2 models only (GPT2 family, tied embeddings, ffn = 4 * hidden)");
  }
  ParamTable layout = GptParamLayout(c);
  if (static_cast<int64_t>(params.size()) != layout.total()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", layout.total(), " parameters, got ", params.size()));
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
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", layout.total(), " parameters, got ", params.size()));
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
  // A shorter context than the file's uses the first rows of its position embedding (GPT-2), or
  // nothing at all (RoPE): only a longer one lacks weights.
  GptConfig stored = file;
  if (job.max_seq <= file.max_seq) stored.max_seq = job.max_seq;
  const std::vector<std::string> diffs = GptConfigDifferences(
      job, stored, "job has", "file has", /*with_padding=*/false, /*with_numerics=*/false);
  if (diffs.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "model.init_from ", path, " does not fit the job's model: ", absl::StrJoin(diffs, "; ")));
}

}  // namespace loom
