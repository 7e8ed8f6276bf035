// ParamTable: every parameter of a model as the parallel code sees it, knowing nothing of GPT:
// its stable global name ("blocks.3.attn.qkv.weight"), global shape, how it is initialised,
// whether weight decay applies, and how it splits over the tensor-parallel group, hence which
// boxes of the global tensor this tensor rank holds and where they sit in its flat buffer.
// model/ describes its parameters (ParamDesc) and builds the table; the optimizer, gradient
// reduction and checkpoints read only the table.
//
// Split rules (weights are [out, in], PyTorch's layout):
//   kReplicated  every tensor rank holds the whole tensor (norm weights, row-parallel biases,
//                position embeddings); its gradient is the same on every tensor rank, so the
//                gradient norm counts it once (grad_replicated_over_tp()).
//   kColumn      dim 0 (output features) split in tp equal blocks (QKV, FC1 / gate_up and their
//                biases). A fused tensor lists its parts along dim 0 (Q, K, V rows; gate, up
//                rows): each part is split separately, so a rank's slice holds whole local heads
//                of Q, K and V, and whole rows of both halves of gate_up.
//   kRow         dim 1 (input features) split in tp equal blocks (attention and MLP output
//                projections).
//   kVocab       dim 0 rows of an embedding or LM head, padded vocabulary split in tp blocks.
// A rank's local tensor is the concatenation of its pieces in order (each piece a box of the
// global tensor stored row-major), with shape `shape`. Init depends only on (seed, name, element
// index in the global tensor), so every layout initialises the same model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "runtime/tensor.h"

namespace loom {

enum class InitKind { kNormal, kOnes, kZeros };
enum class TpSplit { kReplicated, kColumn, kRow, kVocab };
const char* TpSplitName(TpSplit split);

// What a model declares for one parameter (global terms only).
struct ParamDesc {
  std::string name;
  Shape shape;  // global
  TpSplit split = TpSplit::kReplicated;
  std::vector<int64_t> parts;  // kColumn: sizes of the fused parts along dim 0; empty = one part
  // Each rank's block of each part must be a whole number of these rows (a head's rows for
  // QKV: a split may not cut through a head).
  int64_t split_unit = 1;
  InitKind init = InitKind::kZeros;
  float std = 0.0f;             // for kNormal
  int64_t zero_rows_from = -1;  // global rows >= this stay zero (padded vocab rows); -1 = none
  bool decay = false;           // AdamW weight decay applies
  // This rank holds a copy of a parameter whose primary lives on another pipeline stage (the
  // last stage's copy of the tied embedding "wte.weight" it uses as the LM head). The copy is
  // kept identical to the primary (its gradient is summed with the primary's over the embedding
  // group and both get the same update); it is not counted in the gradient norm nor saved in
  // checkpoints, and it is loaded from the primary's data.
  bool tied_copy = false;
};

// A box of a global tensor: offset and extent per dimension.
struct TensorBox {
  std::vector<int64_t> offset, extent;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t e : extent) n *= e;
    return n;
  }
};

// One parameter as this rank holds it.
struct ParamSpec : ParamDesc {
  Shape global_shape;           // == ParamDesc::shape before localisation
  int64_t offset = 0;           // in elements, within this rank's flat buffer
  std::vector<TensorBox> pieces;  // the global boxes held, in local storage order
  // ParamDesc::shape is replaced by the local shape: `shape` is what this rank stores.
  int64_t numel() const { return shape.numel(); }
  bool grad_replicated_over_tp() const { return split == TpSplit::kReplicated; }
};

// Whether tensor rank `tp_rank` stands for `spec` among the copies of the model: the one rule
// for who counts a parameter in the global gradient norm and who writes it to checkpoints
// (the trainer and checkpoint/slices both ask here). A parameter replicated over the tensor
// group is owned by tensor rank 0; a pipeline stage's copy of a tied parameter (GPT-2's LM
// head) by the stage holding the original, so never by the copy; the slices of split
// parameters by every rank.
inline bool OwnsParam(const ParamSpec& spec, int tp_rank) {
  return !spec.tied_copy && !(spec.grad_replicated_over_tp() && tp_rank != 0);
}

class ParamTable {
 public:
  // The table of tensor rank `tp_rank` of `tp`. Refuses a split that does not divide (naming
  // the parameter, the dimension or part, and tp) and duplicate names.
  static absl::StatusOr<ParamTable> Create(const std::vector<ParamDesc>& params, int tp = 1,
                                           int tp_rank = 0);
  // The pieces of the global tensor that tensor rank `tp_rank` of `tp` holds for `desc`.
  static std::vector<TensorBox> PiecesOf(const ParamDesc& desc, int tp, int tp_rank);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  int64_t total() const { return total_; }  // elements of this rank's flat buffer
  int tp() const { return tp_; }
  int tp_rank() const { return tp_rank_; }
  // Elements of the whole model (global shapes, each parameter once).
  int64_t global_total() const { return global_total_; }
  // The spec with this global name, or NotFound naming it.
  absl::StatusOr<const ParamSpec*> Find(const std::string& name) const;

 private:
  std::vector<ParamSpec> specs_;
  int64_t total_ = 0, global_total_ = 0;
  int tp_ = 1, tp_rank_ = 0;
};

// Fills `params` (f32, this rank's flat buffer laid out as `table`, any device) from the seed:
// each element's value is a function of (seed, parameter name, its index in the global tensor).
absl::Status InitParams(const ParamTable& table, uint64_t seed, const Tensor& params);

// The whole model in global layout (parameters in table order, each with its global shape,
// row-major), assembled from every tensor rank's flat buffer `local` (f32, laid out as `table`)
// by an all-gather over `tp`. Every member of `tp` gets the same result. For tests, export and
// consolidated checkpoints.
absl::StatusOr<std::vector<float>> GatherGlobalParams(const ParamTable& table, const Tensor& local,
                                                      Communicator& tp);

// The inverse: this rank's flat buffer (laid out as `table`) cut from the whole model in global
// layout. InvalidArgument when `global` does not hold global_total() elements.
absl::StatusOr<std::vector<float>> SliceGlobalParams(const ParamTable& table,
                                                     absl::Span<const float> global);

}  // namespace loom
