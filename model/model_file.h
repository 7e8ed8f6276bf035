// Model weight files.
//  - llm.c GPT-2 files (int32[256] header: magic 20240326, version 3 = fp32 or 5 = bf16, maxT,
//    V, L, NH, C, Vp; then the 16 tensors in llm.c's order), so users can start from converted
//    GPT-2 weights (`model.init_from`) and export back (`loom export --format llmc`).
//  - loom model files (magic 20241128, version 1): any family, the header holds the full
//    GptConfig and the parameters follow as f32 in ParamTable order. Used for LLaMA-style
//    models, which llm.c's format cannot describe.
// Readers check the header, the size and the shape against what the caller expects and name
// the file and the field in every error.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "model/gpt_params.h"

namespace loom {

inline constexpr int kLlmcModelMagic = 20240326;
inline constexpr int kLoomModelMagic = 20241128;

struct LoadedWeights {
  GptConfig config;
  std::vector<float> params;  // in GptParamLayout(config) order
};

// Reads either format (told apart by the magic number). Weights that are not all finite are
// refused, naming the file and the tensor.
absl::StatusOr<LoadedWeights> ReadModelFile(const std::string& path);

// Writes GPT-2 weights in llm.c's format (version 3 fp32, or 5 bf16 when bf16 is true).
absl::Status WriteLlmcModelFile(const std::string& path, const GptConfig& config,
                                const std::vector<float>& params, bool bf16 = false);
absl::Status WriteLoomModelFile(const std::string& path, const GptConfig& config,
                                const std::vector<float>& params);

// Checks that weights loaded from `path` fit the model the job describes; names every field
// that differs.
absl::Status CheckSameShape(const GptConfig& job, const GptConfig& file, const std::string& path);

}  // namespace loom
