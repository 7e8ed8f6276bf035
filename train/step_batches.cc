#include "train/step_batches.h"

#include <vector>

#include "absl/strings/str_cat.h"

#include "parallel/ring_attention.h"
#include "runtime/status.h"

namespace loom {

absl::Status ResetPositions(const int32_t* segments, int64_t B, int64_t seq_len, int cp,
                            int cp_rank, int32_t* positions) {
  std::vector<int32_t> full;
  int32_t* out = positions;
  if (cp > 1) {
    full.resize(B * seq_len);
    out = full.data();
  }
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* seg = segments + b * seq_len;
    int32_t* pos = out + b * seq_len;
    int64_t start = 0;
    for (int64_t i = 0; i < seq_len; ++i) {
      if (i > 0 && seg[i] != seg[i - 1]) start = i;
      pos[i] = static_cast<int32_t>(i - start);
    }
  }
  if (cp == 1) return absl::OkStatus();
  return SelectContextChunks(full.data(), B, seq_len, cp, cp_rank, positions);
}

absl::StatusOr<std::unique_ptr<StepBatches>> StepBatches::Create(Device* device, DataLoader* loader,
                                                                 int64_t accum, int64_t micro,
                                                                 int64_t full_seq_len, int cp,
                                                                 int cp_rank,
                                                                 bool reset_positions) {
  std::unique_ptr<StepBatches> b(new StepBatches());
  b->device_ = device;
  b->loader_ = loader;
  b->accum_ = accum;
  b->micro_ = micro;
  b->seq_len_ = full_seq_len;
  b->cp_ = cp;
  b->cp_rank_ = cp_rank;
  const int64_t seq_len = full_seq_len / cp;  // this rank's tokens of each sequence
  b->rows_ = micro * seq_len;
  b->masked_ = loader->has_loss_mask();
  // Segment ids stay whole: ring attention on every cp rank reads the whole sequence's.
  b->seg_rows_ = micro * full_seq_len;
  b->reset_positions_ = b->masked_ && reset_positions;
  // Positions (this rank's tokens') after the segment ids.
  b->stride_ = 2 * b->rows_ + b->seg_rows_ + (b->reset_positions_ ? b->rows_ : 0);
  if (cp > 1) {
    b->full_in_.resize(micro * full_seq_len);
    b->full_tg_.resize(micro * full_seq_len);
  }
  LOOM_ASSIGN_OR_RETURN(void* staging,
                        device->AllocateHostStaging(2 * accum * b->stride_ * sizeof(int32_t)));
  b->staging_ = std::shared_ptr<int32_t>(static_cast<int32_t*>(staging),
                                         [device](int32_t* p) { device->FreeHostStaging(p); });
  for (int buffer = 0; buffer < 2; ++buffer) {
    for (int64_t k = 0; k < accum; ++k) {
      if (device->host_memory()) {
        int32_t* in = b->Staging(buffer, k);
        b->inputs_[buffer].push_back(
            Tensor::View(in, Shape{micro, seq_len}, DType::kI32, CpuDevice()));
        b->targets_[buffer].push_back(
            Tensor::View(in + b->rows_, Shape{micro, seq_len}, DType::kI32, CpuDevice()));
        if (b->masked_) {
          b->segments_[buffer].push_back(Tensor::View(in + 2 * b->rows_, Shape{micro, full_seq_len},
                                                      DType::kI32, CpuDevice()));
        }
        if (b->reset_positions_) {
          b->positions_[buffer].push_back(Tensor::View(
              in + 2 * b->rows_ + b->seg_rows_, Shape{micro, seq_len}, DType::kI32, CpuDevice()));
        }
      } else if (buffer == 0) {
        LOOM_ASSIGN_OR_RETURN(Tensor in, Tensor::Empty(Shape{micro, seq_len}, DType::kI32, device));
        LOOM_ASSIGN_OR_RETURN(Tensor tg, Tensor::Empty(Shape{micro, seq_len}, DType::kI32, device));
        b->inputs_[0].push_back(in);
        b->targets_[0].push_back(tg);
        if (b->masked_) {
          LOOM_ASSIGN_OR_RETURN(Tensor sg,
                                Tensor::Empty(Shape{micro, full_seq_len}, DType::kI32, device));
          b->segments_[0].push_back(sg);
        }
        if (b->reset_positions_) {
          LOOM_ASSIGN_OR_RETURN(Tensor pos,
                                Tensor::Empty(Shape{micro, seq_len}, DType::kI32, device));
          b->positions_[0].push_back(pos);
        }
      } else {
        // One set of device tensors: stream order keeps a prefetch's copies after the ops that
        // read the current step's.
        b->inputs_[1] = b->inputs_[0];
        b->targets_[1] = b->targets_[0];
        b->segments_[1] = b->segments_[0];
        b->positions_[1] = b->positions_[0];
      }
    }
  }
  b->consumed_ = loader->GetState();
  return b;
}

int32_t* StepBatches::Staging(int buffer, int64_t k) const {
  return staging_.get() + (static_cast<int64_t>(buffer) * accum_ + k) * stride_;
}

absl::Status StepBatches::Read(int buffer) {
  const int micro = static_cast<int>(micro_);
  for (int64_t k = 0; k < accum_; ++k) {
    int32_t* in = Staging(buffer, k);
    // The copies out of this buffer two steps ago finished before the last read-back returned.
    if (cp_ == 1) {
      LOOM_RETURN_IF_ERROR(loader_->NextBatch(
          micro, absl::MakeSpan(in, rows_), absl::MakeSpan(in + rows_, rows_),
          masked_ ? absl::MakeSpan(in + 2 * rows_, rows_) : absl::Span<int32_t>()));
    } else {
      // Every rank of the cp group reads the same sequences and keeps its two chunks of each.
      LOOM_RETURN_IF_ERROR(loader_->NextBatch(
          micro, absl::MakeSpan(full_in_), absl::MakeSpan(full_tg_),
          masked_ ? absl::MakeSpan(in + 2 * rows_, seg_rows_) : absl::Span<int32_t>()));
      LOOM_RETURN_IF_ERROR(
          SelectContextChunks(full_in_.data(), micro_, seq_len_, cp_, cp_rank_, in));
      LOOM_RETURN_IF_ERROR(
          SelectContextChunks(full_tg_.data(), micro_, seq_len_, cp_, cp_rank_, in + rows_));
    }
    if (reset_positions_) {
      // From the whole rows' segment ids (every rank holds them), cut like the tokens.
      LOOM_RETURN_IF_ERROR(ResetPositions(in + 2 * rows_, micro_, seq_len_, cp_, cp_rank_,
                                          in + 2 * rows_ + seg_rows_));
    }
    if (device_->host_memory()) continue;  // the step's tensors are views of the staging
    const size_t bytes = static_cast<size_t>(rows_) * sizeof(int32_t);
    LOOM_RETURN_IF_ERROR(device_->CopyFromHostAsync(inputs_[buffer][k].data(), in, bytes));
    LOOM_RETURN_IF_ERROR(device_->CopyFromHostAsync(targets_[buffer][k].data(), in + rows_, bytes));
    if (masked_) {
      LOOM_RETURN_IF_ERROR(device_->CopyFromHostAsync(segments_[buffer][k].data(), in + 2 * rows_,
                                                      seg_rows_ * sizeof(int32_t)));
    }
    if (reset_positions_) {
      LOOM_RETURN_IF_ERROR(device_->CopyFromHostAsync(positions_[buffer][k].data(),
                                                      in + 2 * rows_ + seg_rows_, bytes));
    }
  }
  return absl::OkStatus();
}

absl::Status StepBatches::Next() {
  if (prefetched_ >= 0) {
    current_ = prefetched_;
    prefetched_ = -1;
  } else {
    current_ = 1 - current_;
    LOOM_RETURN_IF_ERROR(Read(current_));
  }
  consumed_ = loader_->GetState();
  return absl::OkStatus();
}

absl::Status StepBatches::Prefetch() {
  if (prefetched_ >= 0) return absl::OkStatus();  // already ahead by one step
  const int buffer = 1 - current_;
  LOOM_RETURN_IF_ERROR(Read(buffer));
  prefetched_ = buffer;
  return absl::OkStatus();
}

DataLoaderState StepBatches::consumed_position() const { return consumed_; }

}  // namespace loom
