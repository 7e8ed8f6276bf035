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
  // One range; an empty one is allowed here (an optimizer with nothing to update).
  std::vector<FlatRange> ranges;
  if (begin < end) ranges.push_back({begin, end});
  LOOM_ASSIGN_OR_RETURN(AdamW opt, Create(table, settings, device, ranges));
  opt.ranges_ = {FlatRange{begin, end}};
  return opt;
}

absl::StatusOr<AdamW> AdamW::Create(const ParamTable& table, const AdamWSettings& settings,
                                    Device* device, const std::vector<FlatRange>& ranges) {
  AdamW opt;
  opt.settings_ = settings;
  opt.total_ = table.total();
  opt.ranges_ = ranges;
  int64_t prev_end = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const FlatRange& r = ranges[i];
    if (r.begin < prev_end || r.begin >= r.end || r.end > table.total()) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamW: range ", i, " [", r.begin, ", ", r.end,
                       ") is empty, overlaps or precedes the one before (ending at ", prev_end,
                       ") or lies outside the buffer of ", table.total(), " elements"));
    }
    prev_end = r.end;
    for (const ParamSpec& s : table.specs()) {
      const int64_t lo = std::max(r.begin, s.offset), hi = std::min(r.end, s.offset + s.numel());
      if (lo >= hi) continue;
      Span* last = opt.spans_.empty() ? nullptr : &opt.spans_.back();
      if (last != nullptr && last->decay == s.decay && last->offset + last->count == lo) {
        last->count += hi - lo;  // contiguous in the buffer and, being one range, packed too
      } else {
        opt.spans_.push_back({lo, opt.packed_ + (lo - r.begin), hi - lo, s.decay});
      }
    }
    opt.packed_ += r.size();
  }
  LOOM_ASSIGN_OR_RETURN(opt.m_, Tensor::Zeros(Shape{opt.packed_}, DType::kF32, device));
  LOOM_ASSIGN_OR_RETURN(opt.v_, Tensor::Zeros(Shape{opt.packed_}, DType::kF32, device));
  return opt;
}

absl::Status AdamW::Step(const Tensor& params, const Tensor& grads, float lr, int64_t step,
                         float grad_scale, const Tensor* params_copy) {
  // Packed (the moments' layout) or the whole buffer; a tensor that is both (one range covering
  // the buffer) reads the same either way.
  auto packed = [&](const Tensor& t, const char* what) -> absl::StatusOr<bool> {
    if (t.numel() == packed_) return true;
    if (t.numel() == total_) return false;
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamW::Step: ", what, " holds ", t.numel(), " elements; expected the optimizer's ",
        packed_, " (its ranges back to back) or the whole buffer of ", total_));
  };
  LOOM_ASSIGN_OR_RETURN(const bool params_packed, packed(params, "params"));
  LOOM_ASSIGN_OR_RETURN(const bool grads_packed, packed(grads, "grads"));
  bool copy_packed = false;
  if (params_copy != nullptr) {
    LOOM_ASSIGN_OR_RETURN(copy_packed, packed(*params_copy, "params_copy"));
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
    if (params_copy != nullptr) {
      copy = params_copy->FlatView(copy_packed ? s.packed : s.offset, s.count);
    }
    LOOM_RETURN_IF_ERROR(ops::AdamWUpdate(
        params.FlatView(params_packed ? s.packed : s.offset, s.count),
        grads.FlatView(grads_packed ? s.packed : s.offset, s.count), m_.FlatView(s.packed, s.count),
        v_.FlatView(s.packed, s.count), p, params_copy != nullptr ? &copy : nullptr));
  }
  return absl::OkStatus();
}

}  // namespace loom
