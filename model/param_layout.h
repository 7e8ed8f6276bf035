// ParamLayout: every parameter of a GPT model with its stable global name
// ("blocks.3.attn.qkv.weight"), its global shape, its offset in the one contiguous parameter
// buffer, how it is initialised and whether weight decay applies (2-D weights only).
// Gradients live in a second buffer with the same layout, so later issues can shard both by
// name and global shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "runtime/tensor.h"

namespace loom {

enum class InitKind { kNormal, kOnes, kZeros };

struct ParamSpec {
  std::string name;
  Shape shape;
  int64_t offset = 0;  // in elements, within the flat buffer
  InitKind init = InitKind::kZeros;
  float std = 0.0f;           // for kNormal
  int64_t zero_rows_from = -1;  // rows >= this stay zero (padded vocab rows); -1 = none
  bool decay = false;         // AdamW weight decay applies (2-D weights)
  int64_t numel() const { return shape.numel(); }
};

class ParamLayout {
 public:
  static ParamLayout ForGpt(const GptConfig& config);
  const std::vector<ParamSpec>& specs() const { return specs_; }
  int64_t total() const { return total_; }
  // The spec with this global name, or NotFound naming it.
  absl::StatusOr<const ParamSpec*> Find(const std::string& name) const;

 private:
  void Add(std::string name, Shape shape, InitKind init, float std, bool decay,
           int64_t zero_rows_from = -1);
  std::vector<ParamSpec> specs_;
  int64_t total_ = 0;
};

// Fills `params` (f32, CPU or GPU, laid out as `layout`) from the seed. Each element's value
// depends only on (seed, parameter name, element index in the global tensor), so any
// parallel layout that knows an element's global index initialises the same model.
absl::Status InitParams(const ParamLayout& layout, uint64_t seed, const Tensor& params);

}  // namespace loom
