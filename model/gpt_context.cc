// GptModel's positions and context parallelism: the per-token positions the learned position
// embedding and RoPE read (SetPositions' per micro-batch, or with cp this rank's global
// positions), and attention over the cp ring. Without either these are the plain ops on
// positions 0..T-1 of the whole sequence.
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/gpt.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/rope.h"
#include "runtime/status.h"

namespace loom {

absl::Status GptModel::FillContextPositions() {
  // Every sequence's positions 0..seq_len-1, cut to this rank's chunks as its tokens are.
  const int64_t seq_len = T_ * cp_size_;
  std::vector<int32_t> full(B_ * seq_len), local(B_ * T_);
  for (int64_t b = 0; b < B_; ++b) {
    std::iota(full.begin() + b * seq_len, full.begin() + (b + 1) * seq_len, 0);
  }
  LOOM_RETURN_IF_ERROR(
      SelectContextChunks(full.data(), B_, seq_len, cp_size_, cp_rank_, local.data()));
  return cp_positions_.CopyFrom(
      Tensor::View(local.data(), Shape{B_, T_}, DType::kI32, CpuDevice()));
}

absl::Status GptModel::SelectPositions(int mb) {
  cur_positions_ = Tensor();
  if (positions_.empty()) {
    if (cp_ != nullptr) cur_positions_ = cp_positions_;
    return absl::OkStatus();
  }
  if (mb < 0 || mb >= static_cast<int>(positions_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("micro-batch ", mb, " has no positions (",
                                                   positions_.size(), " set by SetPositions)"));
  }
  if (positions_[mb].shape() != Shape{B_, T_} || positions_[mb].dtype() != DType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat("positions of micro-batch ", mb, " are ",
                                                   positions_[mb].DebugString(), ", expected i32 [",
                                                   B_, ", ", T_, "]"));
  }
  cur_positions_ = positions_[mb];
  return absl::OkStatus();
}

absl::Status GptModel::Rope(const Tensor& qkv3, bool inverse) {
  const float theta = config_.rope_theta;
  const Tensor* positions = CurPositions();
  return inverse ? ops::RopeBackward(qkv3, heads_, kv_heads_, theta, 0, positions)
                 : ops::RopeForward(qkv3, heads_, kv_heads_, theta, 0, positions);
}

absl::Status GptModel::Attention(const Tensor& qkv3, const Tensor& atty3, const Tensor& lse) {
  if (ring_ == nullptr) {
    return ops::AttentionForward(qkv3, heads_, kv_heads_, atty3, lse, CurSegments());
  }
  return ring_->Forward(qkv3, heads_, kv_heads_, atty3, lse, ring_kv_, CurSegments());
}

absl::Status GptModel::AttentionGrad(const Tensor& datty3, const Tensor& qkv3, const Tensor& atty3,
                                     const Tensor& lse, const Tensor& dqkv3) {
  if (ring_ == nullptr) {
    return ops::AttentionBackward(datty3, qkv3, atty3, lse, heads_, kv_heads_, dqkv3,
                                  CurSegments());
  }
  return ring_->Backward(datty3, qkv3, atty3, lse, heads_, kv_heads_, dqkv3, ring_kv_, ring_dkv_,
                         CurSegments());
}

}  // namespace loom
