// The model optimizer the trainer drives, one interface for both data-parallel modes:
//
// - PlainOptimizer: AdamW on the whole flat buffer, after the gradients were all-reduced
//   (GradReducer unsharded). Every replica does the same update, so no communication.
// - DistributedOptimizer (ZeRO-1): after the GradReducer reduce-scattered the gradients, AdamW
//   updates only this rank's shard (the reducer's bucket shards, see ShardOf) of the fp32
//   master weights and both moments, then the updated weights are all-gathered over dp, bucket
//   by bucket, so every replica holds the whole model again.
//
// The model's weights (`params`, laid out as the table) are f32 or bf16. With f32 weights (the
// CPU) they are the master copy and are updated in place; with bf16 weights (the GPU) the
// optimizer owns fp32 master weights (the whole buffer for the plain optimizer, the shard for
// the distributed one) and writes the bf16 weights in the same pass. Both optimizers know
// nothing of GPT: names, offsets and decay flags come from the ParamTable.
//
// StateBytes measures bytes per parameter of the model state from the tensors actually held,
// and ExpectedStateBytes gives the arithmetic it must match: weights 4 + grads 4 + moments 8/dp
// on the CPU (f32 weights), weights 2 + grads 4 + master and moments 12/dp with bf16 weights
// (dp = 1 for the plain optimizer).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/adamw.h"
#include "parallel/communicator.h"
#include "parallel/param_table.h"
#include "runtime/tensor.h"

namespace loom {

// Bytes per parameter of this rank's flat buffer.
struct StateBytes {
  double weights = 0, grads = 0, master = 0, moments = 0;
  double total() const { return weights + grads + master + moments; }
};
// The arithmetic: bf16_weights selects 2 + 4 + 12/dp, otherwise 4 + 4 + 8/dp; the plain
// optimizer is dp = 1.
StateBytes ExpectedStateBytes(bool bf16_weights, int dp);

class ModelOptimizer {
 public:
  virtual ~ModelOptimizer() = default;
  // Sets the weights from a whole fp32 buffer laid out as the table (initialisation or a
  // checkpoint, identical on every dp rank): the master copy (this rank's part) and `params`.
  virtual absl::Status LoadWeights(const Tensor& full_f32) = 0;
  // One AdamW step (after GradReducer::Finish()); step is 1-based, grad_scale multiplies the
  // gradients first (clipping). Afterwards `params` holds the updated model on every dp rank.
  virtual absl::Status Step(float lr, int64_t step, float grad_scale) = 0;
  // The ranges of the gradient buffer this rank holds reduced and updates (for the gradient
  // norm: sum their squares, then over dp when sharded()).
  virtual const std::vector<FlatRange>& owned_ranges() const = 0;
  virtual bool sharded() const = 0;
  // Measured from the tensors held (params, grads, master, moments), per table element.
  virtual StateBytes MeasuredStateBytes() const = 0;
  // The fp32 master weights: the whole buffer (plain) or this rank's shard, packed in range
  // order (distributed). With f32 weights this is `params` itself.
  virtual const Tensor& master() const = 0;
  virtual const AdamW& adamw() const = 0;
};

// params: f32 or bf16, grads: f32, both table.total() elements on `device`.
absl::StatusOr<std::unique_ptr<ModelOptimizer>> CreatePlainOptimizer(const ParamTable& table,
                                                                     const AdamWSettings& settings,
                                                                     Device* device,
                                                                     const Tensor& params,
                                                                     const Tensor& grads);

// params, grads: the padded storage, ShardedBufferSize(table.total(), dp.size()) elements
// (GptModel::params_storage / grads_storage). buckets: the sharded GradReducer's bucket ranges
// (GradReducer::BucketRanges(); they must tile the padded buffer, in any order, each dividing by
// dp); this rank owns ShardOf(bucket, dp.size(), dp.rank()) of each, clipped to the table: the
// ranges the sharded GradReducer leaves reduced. Step ends with one all-gather per bucket.
absl::StatusOr<std::unique_ptr<ModelOptimizer>> CreateDistributedOptimizer(
    const ParamTable& table, const AdamWSettings& settings, Device* device, Communicator& dp,
    const Tensor& params, const Tensor& grads, const std::vector<FlatRange>& buckets);

}  // namespace loom
