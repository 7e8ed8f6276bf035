// DataLoader: hands a data-parallel rank its batches of (input, next-token target) sequences
// cut from memory-mapped token shards.
//
// Samples. Each shard is cut into non-overlapping windows of seq_len + 1 tokens at stride
// seq_len (sample k of a shard starts at token k * seq_len); a sample never crosses a shard
// boundary, so the last < seq_len tokens of each shard are unused (dropped_tokens() counts them
// for the log). Samples of all shards, in shard order, get global ids 0..N-1.
//
// Order. An epoch visits the samples in an order fixed by (seed, epoch): a Fisher-Yates
// shuffle seeded from both, so every epoch is reshuffled and the same seed always gives the same
// orders; with shuffle off (validation) the order is 0..N-1. Rank r of dp takes positions
// r, r + dp, r + 2dp, ... of the order, N / dp samples each: ranks are disjoint, and together
// cover the epoch except its last N mod dp positions (so every rank takes the same number of
// steps; the skipped samples differ from epoch to epoch when shuffled).
//
// Position. (epoch, index into this rank's share) is all the state there is: GetState after k
// batches and SetState on a fresh loader with the same options continues with exactly the
// batches the first loader would have given. A batch that runs past the end of an epoch
// continues into the next one.
//
// Fine-tuning data. When every shard has a token-flags side file (data/token_flags.h: X.mask
// beside shard X), the loader carries its loss mask and document boundaries: a target whose
// token is not a loss token is -1 (the cross-entropy ignores it), and the four-span NextBatch
// also fills segment ids per input position (0 at a sample's first token, one more at each
// document start after it) for block-diagonal attention. Some shards with a side file and some
// without is an error naming one of each.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "data/token_flags.h"
#include "data/token_shard.h"

namespace loom {

struct DataLoaderOptions {
  std::vector<std::string> patterns;  // glob(3) patterns of shard files
  ShardFormat format = ShardFormat::kLlmc;
  int vocab_size = 0;  // every token id must be below this
  int seq_len = 0;     // T: tokens per input row
  uint64_t seed = 0;
  bool shuffle = true;  // false for validation: samples in file order
  int dp_rank = 0;
  int dp_size = 1;
};

// Where a loader stands; saved in checkpoints.
struct DataLoaderState {
  int64_t epoch = 0;
  int64_t index = 0;  // next position in this rank's share of the epoch
  bool operator==(const DataLoaderState& o) const { return epoch == o.epoch && index == o.index; }
};

class DataLoader {
 public:
  // Opens and validates every shard (see TokenShard::Open). Errors: a bad option (naming it),
  // a bad shard (naming the file), or too little data for one sample per rank.
  static absl::StatusOr<std::unique_ptr<DataLoader>> Open(const DataLoaderOptions& options);

  // Fills inputs[b, t] = x[t] and targets[b, t] = x[t + 1] for `batch` samples x, row-major
  // [batch, seq_len]; both spans must hold exactly batch * seq_len ids.
  absl::Status NextBatch(int batch, absl::Span<int32_t> inputs, absl::Span<int32_t> targets);
  // The same, also filling segments[b, t] (all 0 without flags files); segments may be empty.
  absl::Status NextBatch(int batch, absl::Span<int32_t> inputs, absl::Span<int32_t> targets,
                         absl::Span<int32_t> segments);
  // Do the shards carry token flags (loss masks and document starts)?
  bool has_loss_mask() const { return !flags_.empty(); }

  DataLoaderState GetState() const { return state_; }
  // Fails (leaving the position alone) when the index is past this rank's share of an epoch.
  absl::Status SetState(const DataLoaderState& state);
  // Back to the first sample of epoch 0: a validation pass starts here every time.
  void Rewind();

  // The global sample id at `index` of this rank's share of `epoch` (what NextBatch reads).
  int64_t SampleAt(int64_t epoch, int64_t index) const;

  int seq_len() const { return options_.seq_len; }
  int64_t num_samples() const { return num_samples_; }            // N, all ranks
  int64_t samples_per_rank() const { return samples_per_rank_; }  // per epoch
  int64_t num_tokens() const { return num_tokens_; }              // in all shards
  int64_t dropped_tokens() const { return dropped_tokens_; }      // shard tails no sample uses
  const std::vector<std::unique_ptr<TokenShard>>& shards() const { return shards_; }

 private:
  explicit DataLoader(DataLoaderOptions options) : options_(std::move(options)) {}
  // The epoch's order (global sample ids); identity without shuffle.
  void BuildOrder(int64_t epoch, std::vector<int64_t>* order) const;
  void ReadSample(int64_t sample, int32_t* inputs, int32_t* targets, int32_t* segments) const;

  DataLoaderOptions options_;
  std::vector<std::unique_ptr<TokenShard>> shards_;
  std::vector<std::unique_ptr<TokenFlags>> flags_;  // per shard, or empty: no loss masks
  std::vector<int64_t> first_sample_;               // per shard, plus N at the end
  int64_t num_samples_ = 0;
  int64_t samples_per_rank_ = 0;
  int64_t num_tokens_ = 0;
  int64_t dropped_tokens_ = 0;
  DataLoaderState state_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

}  // namespace loom
