// AdamW over a range (or several) of a parameter table's flat buffer: fp32 first and second
// moments for those elements only, weight decay on the parameters the table marks (2-D weights),
// applied decoupled as in Loshchilov & Hutter and torch.optim.AdamW. The range is the whole buffer
// for the plain optimizer and this rank's data-parallel shard for the distributed one (ZeRO-1):
// moments then take 8/dp bytes per parameter; with buckets its shard is one range per bucket. Knows
// nothing of the model: it reads names, offsets and decay flags from the table.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/param_table.h"
#include "runtime/tensor.h"

namespace loom {

// Bytes the optimizer keeps per parameter it updates: AdamW's fp32 m and v, plus the fp32 master
// copy when the model computes in bf16 (the fp32 weights are their own master). The memory
// estimate reads it here; with ZeRO-1 a rank keeps this for its 1/dp shard only.
inline constexpr int64_t kAdamWMomentBytesPerParam = 8;
inline constexpr int64_t kMasterWeightBytesPerParam = 4;
// Gradients are fp32 whatever the compute dtype (model/gpt.h: micro-batches accumulate into
// them and the data-parallel reduction sums them).
inline constexpr int64_t kGradientBytesPerParam = 4;

// Elements [begin, end) of a flat buffer.
struct FlatRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const FlatRange& o) const { return begin == o.begin && end == o.end; }
};

struct AdamWSettings {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

class AdamW {
 public:
  // Moments for elements [begin, end) of the table's flat buffer (end = -1: to the end).
  static absl::StatusOr<AdamW> Create(const ParamTable& table, const AdamWSettings& settings,
                                      Device* device, int64_t begin = 0, int64_t end = -1);
  // Moments for several disjoint ranges, increasing and non-empty, stored back to back in range
  // order ("packed"): size() = the sum of their sizes.
  static absl::StatusOr<AdamW> Create(const ParamTable& table, const AdamWSettings& settings,
                                      Device* device, const std::vector<FlatRange>& ranges);
  // One update of the ranges. Each of params, grads and params_copy is either packed (exactly
  // size() elements, like the moments: for one range [begin, end), a view of that range) or the
  // whole flat buffer (table.total() elements, read and written at the ranges only). step is
  // 1-based (bias correction); grad_scale multiplies the gradients first (clipping). params are
  // fp32 (master) weights; when params_copy is given (a bf16 model's weights) the updated values
  // are written there too, in the same pass.
  absl::Status Step(const Tensor& params, const Tensor& grads, float lr, int64_t step,
                    float grad_scale, const Tensor* params_copy = nullptr);
  const Tensor& m() const { return m_; }
  const Tensor& v() const { return v_; }
  // The first range's begin and the last range's end (0 and 0 without ranges).
  int64_t begin() const { return ranges_.empty() ? 0 : ranges_.front().begin; }
  int64_t end() const { return ranges_.empty() ? 0 : ranges_.back().end; }
  const std::vector<FlatRange>& ranges() const { return ranges_; }
  int64_t size() const { return packed_; }

 private:
  // Maximal runs of consecutive elements that share a decay flag and lie in one range:
  // `offset` in the flat buffer, `packed` in the moments.
  struct Span {
    int64_t offset, packed, count;
    bool decay;
  };
  std::vector<Span> spans_;
  std::vector<FlatRange> ranges_;
  AdamWSettings settings_;
  int64_t total_ = 0, packed_ = 0;
  Tensor m_, v_;
};

}  // namespace loom
