// GptModel under context parallelism: the global positions of this rank's tokens (for the
// learned position embedding and RoPE) and attention over the cp ring. Without a cp group these
// are the plain ops on the whole sequence.
#include "model/gpt.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/rope.h"
#include "runtime/status.h"

namespace loom {

ops::ChunkedPositions GptModel::LocalPositions() const {
  return ContextChunks(T_ * cp_size_, cp_size_, cp_rank_);
}

absl::Status GptModel::Rope(const Tensor& qkv3, bool inverse) {
  const float theta = config_.rope_theta;
  if (cp_ == nullptr) {
    return inverse ? ops::RopeBackward(qkv3, heads_, kv_heads_, theta)
                   : ops::RopeForward(qkv3, heads_, kv_heads_, theta);
  }
  // Each sequence holds two runs of consecutive positions: rotate each run with its offset.
  const ops::ChunkedPositions p = LocalPositions();
  const int64_t width = qkv3.dim(2);
  for (int64_t b = 0; b < B_; ++b) {
    for (int k = 0; k < 2; ++k) {
      LOOM_ASSIGN_OR_RETURN(Tensor run,
                            qkv3.FlatView((b * T_ + k * p.chunk) * width, p.chunk * width)
                                .Reshape(Shape{1, p.chunk, width}));
      const int64_t start = k == 0 ? p.start0 : p.start1;
      LOOM_RETURN_IF_ERROR(inverse ? ops::RopeBackward(run, heads_, kv_heads_, theta, start)
                                   : ops::RopeForward(run, heads_, kv_heads_, theta, start));
    }
  }
  return absl::OkStatus();
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

absl::StatusOr<Tensor> GptModel::LocalWpe() {
  const ops::ChunkedPositions p = LocalPositions();
  const Tensor wpe = P(refs_.wpe);
  LOOM_RETURN_IF_ERROR(
      wpe_local_.Slice(0, p.chunk).CopyFrom(wpe.Slice(p.start0, p.start0 + p.chunk)));
  LOOM_RETURN_IF_ERROR(
      wpe_local_.Slice(p.chunk, 2 * p.chunk).CopyFrom(wpe.Slice(p.start1, p.start1 + p.chunk)));
  return wpe_local_;
}

absl::Status GptModel::AddLocalWpeGrad() {
  const ops::ChunkedPositions p = LocalPositions();
  const Tensor g = G(refs_.wpe);
  for (int k = 0; k < 2; ++k) {
    const int64_t start = k == 0 ? p.start0 : p.start1;
    const Tensor rows = g.Slice(start, start + p.chunk);
    LOOM_RETURN_IF_ERROR(ops::Add(rows, g_wpe_local_.Slice(k * p.chunk, (k + 1) * p.chunk), rows));
  }
  return absl::OkStatus();
}

}  // namespace loom
