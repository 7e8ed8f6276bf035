#include "data/data_loader.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace loom {

namespace {

// splitmix64: a tiny, well-mixed generator; the shuffle must be identical on every machine and
// compiler, which rules out std:: distributions.
uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, bound) without modulo bias (multiply-shift with rejection).
uint64_t Below(uint64_t bound, uint64_t* state) {
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const unsigned __int128 m = static_cast<unsigned __int128>(SplitMix64(state)) * bound;
    if (static_cast<uint64_t>(m) >= threshold) return static_cast<uint64_t>(m >> 64);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataLoader>> DataLoader::Open(const DataLoaderOptions& options) {
  if (options.seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: seq_len must be >= 1, got ", options.seq_len));
  }
  if (options.vocab_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: vocab_size must be >= 1, got ", options.vocab_size));
  }
  if (options.dp_size < 1 || options.dp_rank < 0 || options.dp_rank >= options.dp_size) {
    return absl::InvalidArgumentError(absl::StrCat("data loader: dp_rank ", options.dp_rank,
                                                   " is not in 0..dp_size-1 (dp_size ",
                                                   options.dp_size, ")"));
  }
  auto loader = std::unique_ptr<DataLoader>(new DataLoader(options));
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> paths, ExpandShardGlobs(options.patterns));
  const int64_t t = options.seq_len;
  for (const std::string& path : paths) {
    LOOM_ASSIGN_OR_RETURN(std::unique_ptr<TokenShard> shard,
                          TokenShard::Open(path, options.format, options.vocab_size));
    const int64_t n = static_cast<int64_t>(shard->size());
    const int64_t samples = n >= t + 1 ? (n - 1) / t : 0;
    loader->first_sample_.push_back(loader->num_samples_);
    loader->num_samples_ += samples;
    loader->num_tokens_ += n;
    loader->dropped_tokens_ += n - samples * t;
    const std::string flags_path = TokenFlagsPath(path);
    std::error_code ec;
    if (std::filesystem::exists(flags_path, ec)) {
      if (loader->flags_.size() != loader->shards_.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "data loader: ", path, " has token flags (", flags_path, ") but ",
            loader->shards_.front()->path(),
            " has none: either every shard of a run carries a loss mask or none does"));
      }
      LOOM_ASSIGN_OR_RETURN(std::unique_ptr<TokenFlags> flags,
                            TokenFlags::Open(flags_path, shard->size()));
      loader->flags_.push_back(std::move(flags));
    } else if (!loader->flags_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("data loader: ", path, " has no token flags (", flags_path, ") but ",
                       loader->flags_.front()->path(),
                       " exists: either every shard of a run carries a loss mask or none does"));
    }
    loader->shards_.push_back(std::move(shard));
  }
  loader->first_sample_.push_back(loader->num_samples_);
  loader->samples_per_rank_ = loader->num_samples_ / options.dp_size;
  if (loader->samples_per_rank_ == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data loader: ", absl::StrJoin(options.patterns, ", "), " holds ", loader->num_tokens_,
        " tokens in ", paths.size(), " shard(s), which give ", loader->num_samples_,
        " sample(s) of seq_len+1 = ", t + 1, " tokens; need at least dp_size = ", options.dp_size));
  }
  loader->Rewind();
  return loader;
}

void DataLoader::BuildOrder(int64_t epoch, std::vector<int64_t>* order) const {
  order->resize(num_samples_);
  std::iota(order->begin(), order->end(), int64_t{0});
  if (!options_.shuffle) return;
  // Seed and epoch both go through the mixer, so nearby seeds or epochs give unrelated orders.
  uint64_t mix = options_.seed;
  uint64_t state = SplitMix64(&mix);
  uint64_t epoch_mix = static_cast<uint64_t>(epoch) ^ 0x5DEECE66Dull;
  state ^= SplitMix64(&epoch_mix);
  for (int64_t i = num_samples_ - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(Below(static_cast<uint64_t>(i) + 1, &state));
    std::swap((*order)[i], (*order)[j]);
  }
}

int64_t DataLoader::SampleAt(int64_t epoch, int64_t index) const {
  const int64_t position = index * options_.dp_size + options_.dp_rank;
  if (epoch == order_epoch_) return order_[position];
  std::vector<int64_t> order;
  BuildOrder(epoch, &order);
  return order[position];
}

void DataLoader::ReadSample(int64_t sample, int32_t* inputs, int32_t* targets,
                            int32_t* segments) const {
  const size_t s =
      static_cast<size_t>(std::upper_bound(first_sample_.begin(), first_sample_.end(), sample) -
                          first_sample_.begin() - 1);
  const int64_t t = options_.seq_len;
  // Inputs are tokens [k*t, k*t + t) of the shard, targets the same shifted by one.
  const size_t begin = static_cast<size_t>((sample - first_sample_[s]) * t);
  shards_[s]->Read(begin, static_cast<size_t>(t), inputs);
  shards_[s]->Read(begin + 1, static_cast<size_t>(t), targets);
  if (flags_.empty()) {
    if (segments != nullptr) std::fill(segments, segments + t, 0);
    return;
  }
  const uint8_t* f = flags_[s]->flags().data() + (sample - first_sample_[s]) * t;
  int32_t segment = 0;
  for (int64_t i = 0; i < t; ++i) {
    if ((f[i + 1] & kLossFlag) == 0) targets[i] = -1;
    // Position 0 opens the sample's first segment whatever its flag says.
    if (i > 0 && (f[i] & kDocStartFlag) != 0) ++segment;
    if (segments != nullptr) segments[i] = segment;
  }
}

absl::Status DataLoader::NextBatch(int batch, absl::Span<int32_t> inputs,
                                   absl::Span<int32_t> targets) {
  return NextBatch(batch, inputs, targets, {});
}

absl::Status DataLoader::NextBatch(int batch, absl::Span<int32_t> inputs,
                                   absl::Span<int32_t> targets, absl::Span<int32_t> segments) {
  const size_t t = static_cast<size_t>(options_.seq_len);
  if (batch < 1 || inputs.size() != batch * t || targets.size() != batch * t ||
      (!segments.empty() && segments.size() != batch * t)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data loader: NextBatch(", batch, ") with seq_len ", t,
        " needs inputs and targets (and segments, when given) of ", static_cast<int64_t>(batch) * t,
        " ids, got ", inputs.size(), ", ", targets.size(), " and ", segments.size()));
  }
  for (int b = 0; b < batch; ++b) {
    if (state_.index == samples_per_rank_) {
      state_.epoch += 1;
      state_.index = 0;
    }
    if (order_epoch_ != state_.epoch) {
      BuildOrder(state_.epoch, &order_);
      order_epoch_ = state_.epoch;
    }
    const int64_t sample = order_[state_.index * options_.dp_size + options_.dp_rank];
    ReadSample(sample, inputs.data() + b * t, targets.data() + b * t,
               segments.empty() ? nullptr : segments.data() + b * t);
    state_.index += 1;
  }
  return absl::OkStatus();
}

absl::Status DataLoader::SetState(const DataLoaderState& state) {
  if (state.epoch < 0 || state.index < 0 || state.index > samples_per_rank_) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: position (epoch ", state.epoch, ", index ", state.index,
                     ") does not fit this data: each epoch has ", samples_per_rank_,
                     " samples per rank (did the shards, seq_len or dp size change?)"));
  }
  state_ = state;
  return absl::OkStatus();
}

void DataLoader::Rewind() { state_ = DataLoaderState{}; }

}  // namespace loom
