// Model weight files, read slice by slice.
//  - llm.c GPT-2 files (int32[256] header: magic 20240326, version 3 = fp32 or 5 = bf16, maxT,
//    V, L, NH, C, Vp; then the 16 tensors in llm.c's order), so users can start from converted
//    GPT-2 weights (`model.init_from`) and export back (`loom export --format llmc`).
//  - loom model files (magic 20241128, version 1): any family, the header holds the full
//    GptConfig and the parameters follow as f32 in ParamTable order. Used for LLaMA-style
//    models, which llm.c's format cannot describe.
//  - Hugging Face model directories (config.json + safetensors): model/hf_format.h.
// ModelFileReader maps the file(s) and knows where each of loom's global parameters lies in
// them; a rank reads only the boxes its parameter table holds (ReadModelSlices), for any tensor
// and pipeline layout, so no rank ever holds the whole model. The vocabulary's padding adapts:
// the real rows are read, the job's padding rows are zero, whatever padding the file has.
// Readers check the header, the size and the shape against what the caller expects and name
// the file, the tensor and the field in every error.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "model/gpt_params.h"
#include "runtime/dtype.h"
#include "runtime/files.h"

namespace loom {

inline constexpr int kLlmcModelMagic = 20240326;
inline constexpr int kLoomModelMagic = 20241128;

struct LoadedWeights {
  GptConfig config;
  std::vector<float> params;  // in GptParamLayout(config) order
};

// Where one of loom's parameters lies in a file: one or more stored tensors (parts) stacked
// along loom's dim 0 (HF LLaMA's q_proj, k_proj and v_proj make loom's attn.qkv). A part is a
// row-major 1-D or 2-D tensor in the mapped file, possibly stored transposed (HF GPT-2's
// Conv1D keeps [in, out], loom [out, in]).
struct StoredPart {
  std::string file;    // the file's path, for errors
  std::string tensor;  // the tensor's name in the file ("transformer.h.0.attn.c_attn.weight")
  const uint8_t* data = nullptr;
  DType dtype = DType::kF32;   // kF32, kBF16 or kF16
  int64_t rows = 0, cols = 1;  // in loom's orientation (1-D: cols 1)
  bool transposed = false;     // stored as [cols, rows]
};
struct StoredParam {
  std::vector<StoredPart> parts;
  // Rows (sum over the parts) and columns in loom's orientation. Rows a caller asks for past
  // `rows` read as zero: vocabulary padding, which a file may hold fewer (HF: none) or more of
  // than the job; a file's own padding rows are never read.
  int64_t rows = 0, cols = 1;
};

class ModelFileReader {
 public:
  // An llm.c file, a loom model file (told apart by the magic number) or a Hugging Face model
  // directory (config.json beside model.safetensors or model.safetensors.index.json). Checks
  // headers and sizes; reads no weights.
  static absl::StatusOr<std::unique_ptr<ModelFileReader>> Open(const std::string& path);

  // The stored model. Its padded_vocab is the file's (HF: the vocabulary itself).
  const GptConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  // "llm.c GPT-2 (fp32)", "loom model file", "Hugging Face LlamaForCausalLM (bf16)": for logs.
  const std::string& format() const { return format_; }

  // Fills dst (box.numel() f32, row-major) with that box of loom parameter `name` in global
  // coordinates: stored values converted to f32, rows past the stored (real) rows zero.
  // Errors name the file, the tensor and the box.
  absl::Status ReadBox(const std::string& name, const TensorBox& box, float* dst) const;

  // For the format parsers: the reader owns the mapped files its parts point into.
  ModelFileReader(std::string path, std::string format, GptConfig config)
      : path_(std::move(path)), format_(std::move(format)), config_(config) {}
  const MappedFile& Keep(MappedFile file);
  void set_format(std::string format) { format_ = std::move(format); }
  void Add(const std::string& name, StoredParam param) { params_[name] = std::move(param); }
  const std::map<std::string, StoredParam>& params() const { return params_; }

 private:
  std::string path_, format_;
  GptConfig config_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, StoredParam> params_;
};

// Checks that the model `reader` holds fits the job's model `job`: the same shape apart from
// the padded vocabulary, and a max_seq no longer than the file's (a shorter context uses the
// first position rows); names every field that differs. Then fills this rank's flat buffer
// (laid out as `table`, any tensor rank and pipeline stage, a stage's tied copy from its
// primary) with its slices: every piece of every parameter, read box by box. Non-finite values
// are refused naming the file and the tensor.
absl::StatusOr<std::vector<float>> ReadModelSlices(const ModelFileReader& reader,
                                                   const GptConfig& job, const ParamTable& table);

// The whole model of a file or HF directory in one process (tp 1, one stage), in the file's
// own model (its padded vocab; HF: unpadded). Non-finite weights are refused, naming the file
// and the tensor.
absl::StatusOr<LoadedWeights> ReadModelFile(const std::string& path);

// Writes GPT-2 weights in llm.c's format (version 3 fp32, or 5 bf16 when bf16 is true).
absl::Status WriteLlmcModelFile(const std::string& path, const GptConfig& config,
                                const std::vector<float>& params, bool bf16 = false);
absl::Status WriteLoomModelFile(const std::string& path, const GptConfig& config,
                                const std::vector<float>& params);

// Checks that weights loaded from `path` fit the model the job describes; names every field
// that differs. The padded vocabulary and a max_seq up to the file's are allowed to differ:
// ReadModelSlices adapts both.
absl::Status CheckSameShape(const GptConfig& job, const GptConfig& file, const std::string& path);

}  // namespace loom
