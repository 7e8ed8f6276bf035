// StepBatches: a training step's micro-batches of token ids, read from the data loader into the
// device's host staging memory (page-locked on CUDA) and copied to the device without the host
// waiting (Device::CopyFromHostAsync). The next step's batches are read while this step's work
// runs on the device (Prefetch, called once the step's compute is queued), so on a GPU the
// host's data reading and the copies hide behind compute instead of standing before it.
//
// Two staging buffers alternate: a prefetch writes the one the current step did not use, whose
// copies finished before the current step's read-back returned (stream order: the copies come
// before the compute the read-back waits for). The device tensors are shared by both buffers:
// the prefetch's copies are queued after every op of the current step that reads them, and a
// stream runs in order. On the CPU the step's tensors are views of the staging buffer.
//
// The data position: after a prefetch the loader stands one step ahead of the batches used.
// consumed_position() is the position after the batches Next() has handed out, the one a
// checkpoint saves: a resume reads the prefetched batches again, so it is exact. A prefetch
// nobody used is simply dropped with the StepBatches.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "data/data_loader.h"
#include "runtime/tensor.h"

namespace loom {

// The per-token positions of packed samples, reset at each document start: for each of the B
// rows of `seq_len` segment ids (nondecreasing, as the data loader makes them), position =
// index - the index where its segment begins. With cp > 1 the rows are then cut to cp rank
// `cp_rank`'s two chunks as its tokens are (SelectContextChunks): `positions` holds
// B x seq_len / cp ids. Positions are global within the sequence, so a chunk whose document
// began in another rank's chunk still continues that document's count.
absl::Status ResetPositions(const int32_t* segments, int64_t B, int64_t seq_len, int cp,
                            int cp_rank, int32_t* positions);

class StepBatches {
 public:
  // `accum` micro-batches of `micro` x `seq_len` per step, read from `loader` (not owned;
  // it must outlive this) onto `device`. With context parallelism (cp > 1) the loader's whole
  // sequences are cut to cp rank `cp_rank`'s two chunks (parallel/ring_attention.h
  // SelectContextChunks): the batches are then micro x seq_len / cp. With reset_positions and
  // fine-tuning data (token flags with document starts) each micro-batch also gets per-token
  // positions that restart at every document (ResetPositions; data.reset_position_ids).
  static absl::StatusOr<std::unique_ptr<StepBatches>> Create(Device* device, DataLoader* loader,
                                                             int64_t accum, int64_t micro,
                                                             int64_t seq_len, int cp = 1,
                                                             int cp_rank = 0,
                                                             bool reset_positions = false);

  // The next step's micro-batches: the prefetched ones if Prefetch ran since the last Next,
  // else read and queued now. inputs()/targets() then hold them (device tensors, or views
  // of the staging on the CPU) until the next call of Next.
  absl::Status Next();
  const std::vector<Tensor>& inputs() const { return inputs_[current_]; }
  const std::vector<Tensor>& targets() const { return targets_[current_]; }
  // With fine-tuning data (the loader's shards carry token flags): each micro-batch's segment
  // ids for block-diagonal attention, else empty. With cp > 1 these are NOT cut: every cp rank
  // gets the whole sequences' ids, micro x seq_len, which ring attention reads by global position.
  const std::vector<Tensor>& segments() const { return segments_[current_]; }
  // With fine-tuning data and reset_positions: each micro-batch's per-token positions, reset at
  // each document start (GptModel::SetPositions), else empty. With cp > 1 they are cut to this
  // rank's tokens (micro x seq_len / cp), from the whole sequences' documents.
  const std::vector<Tensor>& positions() const { return positions_[current_]; }
  bool masked() const { return masked_; }
  // The host copy of micro-batch k's targets of the current step (-1: not counted in the loss).
  absl::Span<const int32_t> host_targets(int64_t k) const {
    return absl::MakeConstSpan(Staging(current_, k) + rows_, rows_);
  }

  // Reads the following step's micro-batches into the other staging buffer and queues
  // their copies to the device. Call once the current step's work that reads inputs()/targets()
  // is queued.
  absl::Status Prefetch();
  bool prefetched() const { return prefetched_ >= 0; }

  // The loader's position after the batches Next() has handed out (not after a prefetch).
  DataLoaderState consumed_position() const;

 private:
  StepBatches() = default;
  // Reads a step's micro-batches into staging buffer `buffer` and queues their copies.
  absl::Status Read(int buffer);
  int32_t* Staging(int buffer, int64_t k) const;

  Device* device_ = nullptr;
  DataLoader* loader_ = nullptr;
  int64_t accum_ = 0, micro_ = 0, rows_ = 0;  // rows_: micro x seq_len ids per micro-batch
  int64_t seq_len_ = 0;  // the loader's (whole) sequence length
  int64_t seg_rows_ = 0;  // micro x seq_len: segment ids per micro-batch (whole sequences)
  int64_t stride_ = 0;    // staging ids per micro-batch: inputs, targets (rows_ each), segments
  int cp_ = 1, cp_rank_ = 0;
  std::vector<int32_t> full_in_, full_tg_;  // cp > 1: whole sequences before the cut
  // 2 buffers of accum x stride_ (inputs, targets, segments[, positions: rows_ ids]).
  std::shared_ptr<int32_t> staging_;
  std::vector<Tensor> inputs_[2], targets_[2], segments_[2], positions_[2];
  bool masked_ = false;
  bool reset_positions_ = false;  // masked data with data.reset_position_ids
  int current_ = 0;
  int prefetched_ = -1;       // the buffer a prefetch filled; -1: none
  DataLoaderState consumed_;  // the loader's position before the prefetch
};

}  // namespace loom
