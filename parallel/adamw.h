// AdamW over a range of a parameter table's flat buffer: fp32 first and second moments for the
// range only, weight decay on the parameters the table marks (2-D weights), applied decoupled as
// in Loshchilov & Hutter and torch.optim.AdamW. The range is the whole buffer for the plain
// optimizer and this rank's data-parallel shard for the distributed one (ZeRO-1): moments then
// take 8/dp bytes per parameter. Knows nothing of the model: it reads names, offsets and decay
// flags from the table.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "parallel/param_table.h"
#include "runtime/tensor.h"

namespace loom {

struct AdamWSettings {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

class AdamW {
 public:
  // Moments for elements [begin, end) of the table's flat buffer (end = -1: to the end).
  static absl::StatusOr<AdamW> Create(const ParamTable& table, const AdamWSettings& settings,
                                      Device* device, int64_t begin = 0, int64_t end = -1);
  // One update of the range: params and grads are views of exactly the range (end - begin
  // elements); step is 1-based (bias correction); grad_scale multiplies the gradients first
  // (clipping). params are fp32 (master) weights; when params_copy is given (a bf16 model's
  // weights, also the range) the updated values are written there too, in the same pass.
  absl::Status Step(const Tensor& params, const Tensor& grads, float lr, int64_t step,
                    float grad_scale, const Tensor* params_copy = nullptr);
  const Tensor& m() const { return m_; }
  const Tensor& v() const { return v_; }
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }

 private:
  // Maximal runs of consecutive elements that share a decay flag, relative to begin.
  struct Span {
    int64_t offset, count;
    bool decay;
  };
  std::vector<Span> spans_;
  AdamWSettings settings_;
  int64_t begin_ = 0, end_ = 0;
  Tensor m_, v_;
};

}  // namespace loom
