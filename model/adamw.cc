#include "model/adamw.h"

#include "ops/optimizer.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<AdamW> AdamW::Create(const ParamLayout& layout, const AdamWSettings& settings,
                                    Device* device) {
  AdamW opt;
  opt.settings_ = settings;
  for (const ParamSpec& s : layout.specs()) {
    if (!opt.spans_.empty() && opt.spans_.back().decay == s.decay &&
        opt.spans_.back().offset + opt.spans_.back().count == s.offset) {
      opt.spans_.back().count += s.numel();
    } else {
      opt.spans_.push_back({s.offset, s.numel(), s.decay});
    }
  }
  LOOM_ASSIGN_OR_RETURN(opt.m_, Tensor::Zeros(Shape{layout.total()}, DType::kF32, device));
  LOOM_ASSIGN_OR_RETURN(opt.v_, Tensor::Zeros(Shape{layout.total()}, DType::kF32, device));
  return opt;
}

absl::Status AdamW::Step(const Tensor& params, const Tensor& grads, float lr, int64_t step,
                         float grad_scale, const Tensor* params_copy) {
  ops::AdamWParams p;
  p.lr = lr;
  p.beta1 = settings_.beta1;
  p.beta2 = settings_.beta2;
  p.eps = settings_.eps;
  p.step = step;
  p.grad_scale = grad_scale;
  for (const Span& s : spans_) {
    p.weight_decay = s.decay ? settings_.weight_decay : 0.0f;
    Tensor copy;
    if (params_copy != nullptr) copy = params_copy->FlatView(s.offset, s.count);
    LOOM_RETURN_IF_ERROR(ops::AdamWUpdate(
        params.FlatView(s.offset, s.count), grads.FlatView(s.offset, s.count),
        m_.FlatView(s.offset, s.count), v_.FlatView(s.offset, s.count), p,
        params_copy != nullptr ? &copy : nullptr));
  }
  return absl::OkStatus();
}

}  // namespace loom
