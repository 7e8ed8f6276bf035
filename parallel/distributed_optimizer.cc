#include "parallel/distributed_optimizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ops/optimizer.h"
#include "parallel/adamw.h"
#include "parallel/grad_reducer.h"
#include "runtime/status.h"

namespace loom {

StateBytes ExpectedStateBytes(bool bf16_weights, int dp) {
  StateBytes b;
  b.weights = bf16_weights ? 2 : 4;
  b.grads = kGradientBytesPerParam;
  b.master = bf16_weights ? static_cast<double>(kMasterWeightBytesPerParam) / dp : 0.0;
  b.moments = static_cast<double>(kAdamWMomentBytesPerParam) / dp;
  return b;
}

namespace {

absl::Status CheckBuffers(const ParamTable& table, Device* device, const Tensor& params,
                          const Tensor& grads, const char* who) {
  if (!params.defined() || params.numel() != table.total() ||
      (params.dtype() != DType::kF32 && params.dtype() != DType::kBF16) ||
      params.device() != device) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": the weights must be f32 or bf16 with the table's ", table.total(), " elements on ",
        device->Name(), ", got ", params.defined() ? params.DebugString() : std::string("none")));
  }
  if (!grads.defined() || grads.numel() != table.total() || grads.dtype() != DType::kF32 ||
      grads.device() != device) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": the gradients must be f32 with the table's ", table.total(), " elements on ",
        device->Name(), ", got ", grads.defined() ? grads.DebugString() : std::string("none")));
  }
  return absl::OkStatus();
}

// State shared by both optimizers.
class OptimizerBase : public ModelOptimizer {
 public:
  const std::vector<FlatRange>& owned_ranges() const override { return owned_; }
  const Tensor& master() const override { return master_; }
  const AdamW& adamw() const override { return *adamw_; }
  StateBytes MeasuredStateBytes() const override {
    StateBytes b;
    const double n = static_cast<double>(std::max<int64_t>(1, total_));
    b.weights = static_cast<double>(params_.nbytes()) / n;
    b.grads = static_cast<double>(grads_.nbytes()) / n;
    // With f32 weights the master copy is the weights themselves: no extra bytes.
    b.master = bf16() ? static_cast<double>(master_.nbytes()) / n : 0.0;
    b.moments = static_cast<double>(adamw_->m().nbytes() + adamw_->v().nbytes()) / n;
    return b;
  }

 protected:
  bool bf16() const { return params_.dtype() == DType::kBF16; }
  absl::Status CheckFull(const Tensor& full) const {
    if (!full.defined() || full.dtype() != DType::kF32 || full.numel() != total_) {
      return absl::InvalidArgumentError(
          absl::StrCat("LoadWeights: expected the whole f32 buffer of ", total_, " elements, got ",
                       full.defined() ? full.DebugString() : std::string("none")));
    }
    return absl::OkStatus();
  }
  int64_t total_ = 0;
  Tensor params_, grads_, master_;
  std::optional<AdamW> adamw_;
  std::vector<FlatRange> owned_;
};

class PlainOptimizer : public OptimizerBase {
 public:
  static absl::StatusOr<std::unique_ptr<ModelOptimizer>> Create(const ParamTable& table,
                                                                const AdamWSettings& settings,
                                                                Device* device,
                                                                const Tensor& params,
                                                                const Tensor& grads) {
    LOOM_RETURN_IF_ERROR(CheckBuffers(table, device, params, grads, "PlainOptimizer"));
    auto o = std::make_unique<PlainOptimizer>();
    o->total_ = table.total();
    o->params_ = params;
    o->grads_ = grads;
    if (params.dtype() == DType::kBF16) {
      LOOM_ASSIGN_OR_RETURN(o->master_, Tensor::Empty(Shape{table.total()}, DType::kF32, device));
    } else {
      o->master_ = params;
    }
    LOOM_ASSIGN_OR_RETURN(AdamW a, AdamW::Create(table, settings, device));
    o->adamw_ = std::move(a);
    if (table.total() > 0) o->owned_.push_back({0, table.total()});
    return std::unique_ptr<ModelOptimizer>(std::move(o));
  }

  absl::Status LoadWeights(const Tensor& full) override {
    LOOM_RETURN_IF_ERROR(CheckFull(full));
    if (master_.data() != full.data()) LOOM_RETURN_IF_ERROR(master_.CopyFrom(full));
    if (bf16()) LOOM_RETURN_IF_ERROR(ops::Cast(master_, params_));
    return absl::OkStatus();
  }
  absl::Status Step(float lr, int64_t step, float grad_scale) override {
    return adamw_->Step(master_, grads_, lr, step, grad_scale, bf16() ? &params_ : nullptr);
  }
  bool sharded() const override { return false; }
};

class DistributedOptimizer : public OptimizerBase {
 public:
  static absl::StatusOr<std::unique_ptr<ModelOptimizer>> Create(
      const ParamTable& table, const AdamWSettings& settings, Device* device, Communicator& dp,
      const Tensor& params, const Tensor& grads, const std::vector<FlatRange>& buckets) {
    LOOM_RETURN_IF_ERROR(CheckBuffers(table, device, params, grads, "DistributedOptimizer"));
    std::vector<FlatRange> sorted = buckets;
    std::sort(sorted.begin(), sorted.end(),
              [](const FlatRange& a, const FlatRange& b) { return a.begin < b.begin; });
    int64_t at = 0;
    for (const FlatRange& b : sorted) {
      if (b.begin != at || b.end <= b.begin) {
        return absl::InvalidArgumentError(
            absl::StrCat("DistributedOptimizer: the buckets must tile the buffer of ",
                         table.total(), " elements; bucket [", b.begin, ", ", b.end,
                         ") does not start at ", at, " or is empty"));
      }
      at = b.end;
    }
    if (at != table.total()) {
      return absl::InvalidArgumentError(absl::StrCat("DistributedOptimizer: the buckets cover ", at,
                                                     " of the buffer's ", table.total(),
                                                     " elements"));
    }
    auto o = std::make_unique<DistributedOptimizer>();
    o->dp_ = &dp;
    o->total_ = table.total();
    o->params_ = params;
    o->grads_ = grads;
    const int n = dp.size();
    for (const FlatRange& b : sorted) {
      Gather g;
      g.bucket = b;
      for (int r = 0; r < n; ++r) g.counts.push_back(ShardOf(b, n, r).size());
      g.own = ShardOf(b, n, dp.rank());
      if (g.own.size() > 0) o->owned_.push_back(g.own);
      o->gathers_.push_back(std::move(g));
    }
    LOOM_ASSIGN_OR_RETURN(AdamW a, AdamW::Create(table, settings, device, o->owned_));
    o->adamw_ = std::move(a);
    if (params.dtype() == DType::kBF16) {
      // The fp32 master copy of the shard only: 4/dp bytes per parameter.
      LOOM_ASSIGN_OR_RETURN(o->master_,
                            Tensor::Empty(Shape{o->adamw_->size()}, DType::kF32, device));
    } else {
      o->master_ = params;
    }
    return std::unique_ptr<ModelOptimizer>(std::move(o));
  }

  absl::Status LoadWeights(const Tensor& full) override {
    LOOM_RETURN_IF_ERROR(CheckFull(full));
    if (bf16()) {
      int64_t packed = 0;
      for (const FlatRange& r : owned_) {
        LOOM_RETURN_IF_ERROR(
            master_.FlatView(packed, r.size()).CopyFrom(full.FlatView(r.begin, r.size())));
        packed += r.size();
      }
      return ops::Cast(full, params_);
    }
    if (params_.data() != full.data()) LOOM_RETURN_IF_ERROR(params_.CopyFrom(full));
    return absl::OkStatus();
  }

  absl::Status Step(float lr, int64_t step, float grad_scale) override {
    // The shard: the master weights packed (bf16) or in place in the f32 weights; gradients are
    // read at the owned ranges of the whole buffer.
    LOOM_RETURN_IF_ERROR(
        adamw_->Step(master_, grads_, lr, step, grad_scale, bf16() ? &params_ : nullptr));
    // Every rank's updated shard to every rank, in place, all buckets in flight together.
    std::vector<std::unique_ptr<CommWork>> works;
    for (const Gather& g : gathers_) {
      LOOM_ASSIGN_OR_RETURN(
          auto w,
          dp_->AllGatherVAsync(params_.FlatView(g.own.begin, g.own.size()),
                               params_.FlatView(g.bucket.begin, g.bucket.size()), g.counts));
      works.push_back(std::move(w));
    }
    for (auto& w : works) LOOM_RETURN_IF_ERROR(w->Wait());
    return absl::OkStatus();
  }
  bool sharded() const override { return true; }

 private:
  struct Gather {
    FlatRange bucket, own;
    std::vector<int64_t> counts;  // ShardOf sizes, by rank
  };
  Communicator* dp_ = nullptr;
  std::vector<Gather> gathers_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelOptimizer>> CreatePlainOptimizer(const ParamTable& table,
                                                                     const AdamWSettings& settings,
                                                                     Device* device,
                                                                     const Tensor& params,
                                                                     const Tensor& grads) {
  return PlainOptimizer::Create(table, settings, device, params, grads);
}

absl::StatusOr<std::unique_ptr<ModelOptimizer>> CreateDistributedOptimizer(
    const ParamTable& table, const AdamWSettings& settings, Device* device, Communicator& dp,
    const Tensor& params, const Tensor& grads, const std::vector<FlatRange>& buckets) {
  return DistributedOptimizer::Create(table, settings, device, dp, params, grads, buckets);
}

}  // namespace loom
