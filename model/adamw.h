// AdamW over a model's flat parameter buffer: fp32 first and second moments with the same
// layout as the parameters; weight decay only on the parameters the layout marks (2-D
// weights), applied decoupled as in Loshchilov & Hutter and torch.optim.AdamW.
#pragma once

#include "absl/status/statusor.h"
#include "model/param_layout.h"
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
  static absl::StatusOr<AdamW> Create(const ParamLayout& layout, const AdamWSettings& settings,
                                      Device* device);
  // One update of every parameter: step is 1-based (bias correction), grad_scale multiplies
  // the gradients first (clipping). params are the fp32 (master) weights; when params_copy is
  // given (a bf16 model's weights) the updated values are also written there, in the same pass.
  absl::Status Step(const Tensor& params, const Tensor& grads, float lr, int64_t step,
                    float grad_scale, const Tensor* params_copy = nullptr);
  const Tensor& m() const { return m_; }
  const Tensor& v() const { return v_; }

 private:
  // Maximal runs of consecutive parameters that share a decay flag: one fused update each.
  struct Span {
    int64_t offset, count;
    bool decay;
  };
  std::vector<Span> spans_;
  AdamWSettings settings_;
  Tensor m_, v_;
};

}  // namespace loom
