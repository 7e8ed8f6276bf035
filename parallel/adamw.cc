#include "parallel/adamw.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ops/optimizer.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<AdamW> AdamW::Create(const ParamTable& table, const AdamWSettings& settings,
                                    Device* device, int64_t begin, int64_t end) {
  if (end < 0) end = table.total();
  if (begin < 0 || begin > end || end > table.total()) {
    return absl::InvalidArgumentError(absl::StrCat("AdamW: range [", begin, ", ", end,
                                                   ") outside the buffer of ", table.total()));
  }
  AdamW opt;
  opt.settings_ = settings;
  opt.begin_ = begin;
  opt.end_ = end;
  for (const ParamSpec& s : table.specs()) {
    const int64_t lo = std::max(begin, s.offset), hi = std::min(end, s.offset + s.numel());
    if (lo >= hi) continue;
    if (!opt.spans_.empty() && opt.spans_.back().decay == s.decay &&
        opt.spans_.back().offset + opt.spans_.back().count == lo - begin) {
      opt.spans_.back().count += hi - lo;
    } else {
      opt.spans_.push_back({lo - begin, hi - lo, s.decay});
    }
  }
  LOOM_ASSIGN_OR_RETURN(opt.m_, Tensor::Zeros(Shape{end - begin}, DType::kF32, device));
  LOOM_ASSIGN_OR_RETURN(opt.v_, Tensor::Zeros(Shape{end - begin}, DType::kF32, device));
  return opt;
}

absl::Status AdamW::Step(const Tensor& params, const Tensor& grads, float lr, int64_t step,
                         float grad_scale, const Tensor* params_copy) {
  const int64_t n = end_ - begin_;
  if (params.numel() != n || grads.numel() != n ||
      (params_copy != nullptr && params_copy->numel() != n)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamW::Step: params, grads (and copy) must hold the optimizer's range of ", n,
        " elements, got ", params.numel(), " and ", grads.numel()));
  }
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
