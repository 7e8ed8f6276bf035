// GptModel: a GPT-2 or LLaMA-style model, or this tensor rank's share of one: parameters in one
// contiguous buffer laid out by the parameter table (model/gpt_params.h), fp32 gradients in
// another with the same layout, and the activations one forward pass keeps for its backward
// pass (allocated for a (B, T) on first use and reused).
//
// ForwardBackward computes the mean cross-entropy over the micro-batch and, when asked, ADDS
// loss_weight * d(mean loss)/d(params) into the gradient buffer, so calling it once per
// micro-batch with loss_weight = 1 / micro_batches accumulates the gradient of the mean loss
// over the whole batch. Compute runs in the parameters' dtype (f32 on the CPU); norm
// statistics, log-sum-exps and losses are always f32.
//
// Tensor parallelism (Megatron): with a tensor group of size tp, QKV and FC1 / gate_up are
// column-parallel (attention runs on the local heads), the attention and MLP output projections
// row-parallel (all-reduce of their output in forward, of their input's gradient in backward),
// the embedding and LM head vocab-parallel with a vocab-parallel cross-entropy. A row-parallel
// bias is added by tensor rank 0 only, before the reduction, so it counts once. With sequence
// parallelism the activations between the column- and row-parallel regions (norms, residuals,
// the embedding output) hold only this rank's contiguous block of the B*T rows: an all-gather
// precedes each column-parallel GEMM (repeated in backward rather than stored) and a
// reduce-scatter follows each row-parallel one; the gradients of replicated parameters are then
// partial per rank and are all-reduced over the tensor group once they are final.
//
// Pipeline parallelism: a model may hold only a pipeline stage's part (GptStage): one or more
// model chunks (contiguous layer ranges), the embedding when it holds the first virtual stage,
// the final norm, LM head and loss when it holds the last. The chunk API (ChunkForward,
// ChunkBackward) runs one micro-batch through one chunk; what a micro-batch keeps from its
// forward for its backward lives in a slot, taken at the forward (or when its input activation
// is received) and given back after the backward, so the activations held are those of the
// micro-batches in flight. The chunk that ends the model runs the head's forward, the loss and
// the head's backward at once in its forward pass and keeps only dL/d(chunk output), so the
// logits are never held per micro-batch. ForwardBackward is the single-stage case of the same
// code. Activation recomputation (Recompute) trades compute for the memory of each slot.
//
// Context parallelism: with a cp group of size cp, a micro-batch is this rank's T = seq_len / cp
// tokens of each sequence (chunks r and 2*cp-1-r, parallel/ring_attention.h): every op but
// attention is per token and runs on them as is; the learned position embedding and RoPE use
// the tokens' global positions; attention is ring attention over the cp group. The gradients
// are this rank's share: the trainer averages them over dp x cp.
//
// Positions: the learned position embedding and RoPE read one position per token. By default
// token t of a sequence is at t (with cp: the global position of this rank's chunk, from a
// per-token array the model builds once per shape); SetPositions gives per-token positions per
// micro-batch instead (packed fine-tuning samples, positions reset at each document start, cut
// for cp like the tokens). One path: the ops take the per-token array, or nothing for 0..T-1.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include <functional>
#include <utility>

#include "model/gpt_config.h"
#include "model/gpt_params.h"
#include "ops/attention_block.h"
#include "parallel/communicator.h"
#include "parallel/ring_attention.h"
#include "runtime/tensor.h"

namespace loom {

// How the model is split over its tensor group (none: the whole model on this rank).
struct TensorParallelism {
  Communicator* tp = nullptr;  // null or size 1: no tensor parallelism
  bool sequence_parallel = false;
  Communicator* cp = nullptr;  // null or size 1: no context parallelism (ring attention)
};

// What a slot keeps for backward.
enum class Recompute {
  kNone,       // every layer's activations
  kSelective,  // all but the MLP activation (GELU / SwiGLU output), recomputed from its input
  kFull,       // only each layer's input; backward reruns each layer's forward before its own
};
const char* RecomputeName(Recompute r);  // "none", "selective", "full"

class GptModel {
 public:
  // dtype is the compute dtype of parameters and activations: f32, or bf16 (GPU; the trainer
  // then keeps fp32 master weights and casts into params() after each update). Refuses heads,
  // kv heads, ffn or padded vocab that do not divide by tp, and a stage whose chunks are not
  // valid layer ranges. An empty `stage` is the whole model.
  static absl::StatusOr<std::unique_ptr<GptModel>> Create(const GptConfig& config, Device* device,
                                                          DType dtype = DType::kF32,
                                                          TensorParallelism tp = {},
                                                          GptStage stage = {},
                                                          Recompute recompute = Recompute::kNone);

  // The activation memory a model of this shape allocates for micro-batches of B x T tokens,
  // found by running its own allocation code (SetShape, then one slot per chunk) without
  // allocating anything: what it holds once (scratch: backward buffers, the head's logits, the
  // recomputation buffers) and what one slot of each chunk holds (one micro-batch in flight
  // through that chunk). The memory estimate (job/memory_estimate.h) prices activations with it,
  // so the estimate and the allocation cannot drift apart.
  struct ActivationFootprint {
    int64_t scratch = 0;
    std::vector<int64_t> slot;  // bytes per chunk of the stage
  };
  static absl::StatusOr<ActivationFootprint> MeasureActivations(
      const GptConfig& config, int tp, bool sequence_parallel, GptStage stage, DType dtype,
      Recompute recompute, int64_t B, int64_t T, int cp = 1, bool split_backward = false);

  const GptConfig& config() const { return config_; }
  const GptStage& stage() const { return stage_; }
  const ParamTable& layout() const { return layout_; }
  Device* device() const { return device_; }
  DType dtype() const { return dtype_; }
  Recompute recompute() const { return recompute_; }
  const Tensor& params() const { return params_; }
  const Tensor& grads() const { return grads_; }
  // The storage under params() and grads(): the table's elements, then (after PadBuffers) zero
  // padding that belongs to no parameter.
  const Tensor& params_storage() const { return params_storage_; }
  const Tensor& grads_storage() const { return grads_storage_; }
  // Grows both buffers' storage to a multiple of `multiple` elements, zero-filled: the
  // distributed optimizer's equal shards (parallel/grad_reducer.h). params() and grads() keep
  // the table's size. Call before anything else holds the buffers (right after Create).
  absl::Status PadBuffers(int64_t multiple);
  // A view of one parameter (or its gradient) by spec.
  Tensor Param(const ParamSpec& s) const;
  Tensor Grad(const ParamSpec& s) const;
  absl::StatusOr<Tensor> ParamByName(const std::string& name) const;

  absl::Status ZeroGrads();

  // Called with a parameter's index in layout().specs() once its gradient is final, in backward
  // order, during backward passes made with final_backward = true (the last micro-batch of a
  // step): the data-parallel reduction starts buckets from here while backward continues.
  using GradReadyHook = std::function<absl::Status(int param_index)>;
  void set_grad_ready_hook(GradReadyHook hook) { grad_ready_ = std::move(hook); }
  // Marks the next backward passes as (not) the step's last: sequence parallelism all-reduces
  // the replicated parameters' gradients over the tensor group then, and the hook fires.
  void set_final_backward(bool final) { final_backward_ = final; }

  int tp_size() const { return tp_size_; }
  int tp_rank() const { return tp_rank_; }
  bool sequence_parallel() const { return sp_; }
  // Bytes of activations now allocated: the slots (each micro-batch in flight through a chunk
  // holds one; they are kept for reuse, so this is the peak since the last shape change) plus
  // the forward/backward scratch shared by all.
  int64_t activation_bytes() const { return scratch_bytes_ + slot_bytes_; }
  int64_t slot_bytes() const { return slot_bytes_; }
  int slots_allocated() const;
  // Host seconds spent in tensor-parallel collectives (all-reduces of activations, their
  // gradients and the vocab-parallel cross-entropy) and in sequence-parallel all-gathers and
  // reduce-scatters, since the last TakeCommTimes(). On the GPU this is the time to enqueue.
  struct CommTimes {
    double tp_seconds = 0, sp_seconds = 0;
  };
  CommTimes TakeCommTimes() { return std::exchange(comm_, CommTimes{}); }
  int cp_size() const { return cp_size_; }
  // Ring attention's waits and block compute since the last call (zeros without cp).
  RingTimes TakeRingTimes() { return ring_ ? ring_->TakeTimes() : RingTimes{}; }

  // Losses kept on the device, so the host need not wait for each micro-batch (a GPU's host
  // then runs ahead of its work): while `rows` is defined (f32 [R, B*T] on the model's device),
  // the k-th head forward since this call copies its per-row losses into row k, and returns 0
  // instead of the loss. The caller reads the rows once (one host wait per step) and takes each
  // micro-batch's mean with MeanLoss, the arithmetic of the returned loss. An undefined tensor
  // turns this off (evaluation, sampling).
  void DeferLosses(const Tensor& rows) {
    deferred_ = rows;
    deferred_next_ = 0;
  }
  // Rows written since DeferLosses (the head forwards of this stage; 0 without a head).
  int64_t deferred_losses() const { return deferred_next_; }
  // The mean of one micro-batch's per-row losses, as ForwardBackward computes it.
  static float MeanLoss(const float* rows, int64_t n);

  // The whole model (or a single-stage one): tokens, targets: i32 [B, T] (host or device).
  // Returns the mean loss over the B*T rows (0 while losses are deferred).
  absl::StatusOr<float> ForwardBackward(const Tensor& tokens, const Tensor& targets,
                                        float loss_weight, bool backward = true);
  // Forward only, leaving the logits [B*T, padded_vocab / tp] in the returned view (valid until
  // the next call).
  absl::StatusOr<Tensor> Forward(const Tensor& tokens);

  // Packed examples (fine-tuning data): segment ids i32 [B, T] per micro-batch (with context
  // parallelism the whole sequence's, [B, T * cp], as ring attention reads them), on the model's
  // device (or the host for a host-memory device), indexed by the micro-batch number of the
  // chunk calls (ForwardBackward and Forward use 0). Attention then stays inside each segment
  // (block-diagonal causal, ops/attention.h). Empty (the default): plain causal attention. The
  // caller keeps the tensors unchanged until the micro-batches' backward passes have run.
  void SetSegments(std::vector<Tensor> per_micro_batch) { segments_ = std::move(per_micro_batch); }
  // Per-token positions i32 [B, T] per micro-batch (same device and indexing as SetSegments),
  // read by the position embedding (GPT-2) and RoPE (LLaMA), forward and backward: position
  // ids reset at each packed example's start, so an example sees the positions it would see
  // alone (and at generation time). Under cp each holds this rank's chunks of the sequences'
  // positions (SelectContextChunks). Empty (the default): 0..T-1, or this rank's chunks'
  // global positions. Kept unchanged by the caller until the backward passes have run.
  void SetPositions(std::vector<Tensor> per_micro_batch) {
    positions_ = std::move(per_micro_batch);
  }

  // ---- Chunk API (pipeline stages). Chunks are numbered 0 .. stage().chunks.size() - 1. ----
  int num_chunks() const { return static_cast<int>(stage_.chunks.size()); }
  // Does chunk `chunk` begin the model (embedding) / end it (head and loss)?
  bool ChunkHasEmbedding(int chunk) const { return stage_.embedding && chunk == 0; }
  bool ChunkHasHead(int chunk) const { return stage_.head && chunk == num_chunks() - 1; }
  // Sets the micro-batch shape (B sequences of T tokens) for the chunk calls; a new shape drops
  // all slots. Rows of an activation between chunks: B*T, or B*T/tp with sequence parallelism.
  absl::Status SetShape(int64_t B, int64_t T);
  int64_t activation_rows() const { return Ns_; }
  // The [rows, hidden] tensor micro-batch `mb`'s input activation of `chunk` is received into
  // (takes its slot). Not for the embedding chunk.
  absl::StatusOr<Tensor> ChunkInput(int chunk, int mb);
  // The [rows, hidden] tensor dL/d(output of `chunk`) of micro-batch `mb` is received into,
  // before ChunkBackward. Not for the head chunk (its forward computes it).
  absl::StatusOr<Tensor> ChunkOutputGrad(int chunk, int mb);
  enum class HeadMode { kTrain, kEval, kLogits };
  // Runs micro-batch `mb` forward through `chunk`. The embedding chunk reads `tokens` (i32
  // [B, T]); the head chunk reads `targets` and returns the mean loss over the micro-batch (kTrain
  // also runs the head's backward with loss_weight, kEval only the loss, kLogits neither: the
  // logits stay in logits()). Other chunks return 0. Afterwards ChunkOutput() is the chunk's
  // output activation (until the next chunk call). kEval / kLogits give the slot back at once
  // (no backward follows).
  absl::StatusOr<float> ChunkForward(int chunk, int mb, const Tensor* tokens,
                                     const Tensor* targets, float loss_weight,
                                     HeadMode mode = HeadMode::kTrain);
  const Tensor& ChunkOutput() const { return chunk_output_; }
  const Tensor& logits() const { return logits_; }
  // Backward of micro-batch `mb` through `chunk` (its output gradient received or computed by
  // the head), accumulating the parameters' gradients; gives the slot back. Afterwards
  // ChunkInputGrad() is dL/d(chunk input) (until the next chunk call); the embedding chunk
  // instead finishes with the embedding's gradient.
  absl::Status ChunkBackward(int chunk, int mb);
  const Tensor& ChunkInputGrad() const { return d_res_; }

  // ---- The backward split (schedules with deferred weight gradients: ZERO_BUBBLE). ----
  // ChunkBackwardInput is ChunkBackward's B half: ChunkInputGrad() (what the previous stage
  // waits for), the norms' gradients (their fused kernel gives them with dx) and none of the
  // weight GEMMs' or the embedding's. What those need stays alive, and nothing else beyond the
  // plain backward's slot: the slot stays taken; each GEMM's output gradient goes into a slot
  // tensor B has finished with (qkv's into the slot's qkv, fc's into its fc, the MLP output's
  // into the layer's output, the attention projection's into res2, the embedding's into the
  // chunk's input); with sequence parallelism W gathers the rows again instead of keeping
  // gathered copies. Only recomputation leaves tensors W reads outside the slot (the rebuilt
  // activations), which go into the slot's weight-gradient buffers (WeightStashPlan).
  // ChunkBackwardWeight is the W half: it accumulates the weight GEMMs' dW and db and the
  // embedding's gradient, fires the gradient-ready hooks of a final pass and gives the slot
  // back. B then W gives ChunkBackward's gradients bit for bit. The head keeps running its
  // whole backward inside its forward: deferring its W would hold the logits' gradient
  // [B*T, V/tp] per micro-batch. Needs set_split_backward(true) first.
  absl::Status ChunkBackwardInput(int chunk, int mb);
  absl::Status ChunkBackwardWeight(int chunk, int mb);
  // Makes every slot hold the weight-gradient buffers the split needs (counted in
  // slot_bytes()); drops the slots, so call it with none in flight.
  absl::Status set_split_backward(bool split);
  bool split_backward() const { return split_backward_; }

 private:
  GptModel(const GptConfig& config, Device* device, ParamTable layout);
  struct LayerActs {
    Tensor norm1, mean1, rstd1, qkv, atty, lse, res2, norm2, mean2, rstd2, fc, act, res3;
  };
  // One deferred piece of weight-gradient work, over views into the slot or its stash.
  struct WeightTask {
    enum Kind { kLinear, kEmbedding, kReady } kind;
    Tensor dout, in;              // in: the GEMM's input, or the tokens
    bool gather_dout = false;     // sequence parallelism: dout / in are this rank's rows,
    bool gather_in = false;       // gathered again over the tensor group before the GEMM
    Tensor positions;             // kEmbedding: per-token positions (undefined: 0..T-1)
    ParamRef w, b;                // b unheld: no bias gradient (or no position embedding)
    std::vector<ParamRef> ready;  // kReady: their gradients are final
  };
  // What a deferred weight GEMM reads, as B names it for W: `t` (with sequence parallelism, the
  // rows of this rank it was gathered from, `gathered`), kept as it is when `in_slot`, else
  // copied into `dead` (a slot tensor B has finished with) or the slot's next stash buffer.
  struct WeightOperand {
    Tensor t;
    bool gathered = false;
    bool in_slot = false;
    const Tensor* dead = nullptr;
  };
  // One micro-batch in flight through one chunk.
  struct Slot {
    int mb = -1;                    // -1: free
    Tensor tokens;                  // i32 [B, T] (embedding chunk)
    Tensor x_in;                    // [Ns, C] the chunk's input
    Tensor d_out;                   // [Ns, C] dL/d(chunk output)
    std::vector<LayerActs> acts;    // one per layer of the chunk (none under full recompute)
    std::vector<Tensor> layer_out;  // full recompute: each layer's output [Ns, C], its checkpoint
    // Split backward: the weight-gradient buffers (WeightStashPlan), the deferred work B
    // recorded for W, and whether B ran.
    std::vector<Tensor> stash;
    size_t stash_next = 0;
    std::vector<WeightTask> w_tasks;
    bool input_grad_done = false;
  };
  absl::StatusOr<Slot*> TakeSlot(int chunk, int mb);
  absl::StatusOr<Slot*> FindSlot(int chunk, int mb, const char* what);
  absl::Status AllocLayerActs(LayerActs& a, bool keep_act, int64_t* bytes);
  absl::StatusOr<Tensor> Alloc(const Shape& shape, DType dtype, int64_t* bytes);
  absl::Status EmbeddingForward(const Tensor& tokens, const Tensor& out);
  // `dead`: a slot tensor of [rows, C] B has finished with, to keep the embedding's output
  // gradient in until W (the split backward).
  absl::Status EmbeddingBackward(const Tensor& tokens, const Tensor* dead);
  absl::Status LayerForward(int layer, const Tensor& x, LayerActs& a);
  absl::Status LayerBackward(int layer, const Tensor& x_in, LayerActs& a);
  absl::Status RunChunkLayers(int chunk, Slot& slot);
  absl::Status BackwardBody(int chunk, Slot& slot);  // ChunkBackward's work on a slot
  // The backward's parameter-gradient points (gpt_backward_split.cc): run at once, or, during
  // ChunkBackwardInput, only their input-gradient half with the rest recorded for W.
  // dinp = dout @ W^T-side; dW (+ db when `b` is held) += from dout and inp; what W will read
  // of dout and inp is `keep_dout` and `keep_in` (the same tensors, or the rows they were
  // gathered from, and where they stay alive until W).
  absl::Status LinearGrads(const Tensor& dout, const Tensor& inp, ParamRef w, ParamRef b,
                           const Tensor* dinp, const WeightOperand& keep_dout,
                           const WeightOperand& keep_in);
  // LayerNorm (b held) or RMSNorm backward: dx, and dgamma (dbeta). Never deferred: the
  // norm's own fused kernel (one pass over [rows, C]) also gives gamma's and beta's gradients,
  // and deferring them would keep the norm's input and output gradient alive until W.
  absl::Status NormGrads(const Tensor& dout, const Tensor& x, ParamRef w, ParamRef b,
                         const Tensor& mean, const Tensor& rstd, const Tensor& dx);
  absl::Status EmbeddingGrads(const Tensor& tokens, const Tensor& dout, bool with_positions,
                              const WeightOperand& keep_dout);
  absl::Status ParamsReady(const std::vector<ParamRef>& refs);
  // During ChunkBackwardInput: what W reads of `op`: op.t itself when it lives in the slot, else
  // a copy in op.dead or in the slot's next stash buffer (whose shape must be op.t's: the plan
  // and the code go in step).
  absl::StatusOr<Tensor> Keep(const WeightOperand& op);
  absl::Status RunWeightTask(const WeightTask& t);
  // The stash buffers one slot of `chunk` needs, in the order Keep takes them.
  std::vector<std::pair<Shape, DType>> WeightStashPlan(int chunk) const;
  // The head on x_last [Ns, C]: final norm, logits, loss; kTrain also the head's backward into
  // d_out. Returns the mean loss (0 for kLogits).
  absl::StatusOr<float> HeadForward(const Tensor& x_last, const Tensor& targets, float loss_weight,
                                    HeadMode mode, const Tensor& d_out);
  // A parameter (gradient) through its handle, resolved in Create (ResolveGptParams).
  Tensor P(ParamRef r) const { return Param(layout_.specs()[r.index]); }
  Tensor G(ParamRef r) const { return Grad(layout_.specs()[r.index]); }
  // Tensor-parallel collectives (no-ops without a tensor group).
  absl::Status TpAllReduce(const Tensor& t, ReduceOp op = ReduceOp::kSum);
  // Sequence-parallel: rows of this rank <-> all rows.
  absl::Status GatherRows(const Tensor& shard, const Tensor& full);
  absl::Status ScatterRows(const Tensor& full, const Tensor& shard);  // reduce-scatter (sum)
  // The reduction after a row-parallel GEMM (all-reduce, or reduce-scatter into `shard`).
  absl::Status ReduceRowParallel(const Tensor& full, const Tensor& shard);
  // The conjugate before backward of a column-parallel GEMM's input gradient.
  absl::Status ReduceInputGrad(const Tensor& partial_full, const Tensor& shard);
  // The step's gradient of these parameters is complete (final backward only); unheld ones
  // (another family's) are passed over.
  absl::Status GradsReady(const std::vector<ParamRef>& refs);
  // Context parallelism and positions (model/gpt_context.cc): per-token positions, attention
  // over the ring.
  absl::Status Rope(const Tensor& qkv3, bool inverse);
  absl::Status Attention(const Tensor& qkv3, const Tensor& atty3, const Tensor& lse);
  absl::Status AttentionGrad(const Tensor& datty3, const Tensor& qkv3, const Tensor& atty3,
                             const Tensor& lse, const Tensor& dqkv3);
  // The running micro-batch's positions: SetPositions' entry for micro-batch `mb`, else the
  // cp chunks' (cp_positions_), else none (0..T-1).
  absl::Status SelectPositions(int mb);
  const Tensor* CurPositions() const {
    return cur_positions_.defined() ? &cur_positions_ : nullptr;
  }
  // Fills cp_positions_ with this cp rank's global positions (SetShape, cp > 1).
  absl::Status FillContextPositions();

  GptConfig config_;
  GptStage stage_;
  ParamTable layout_;
  GptParamRefs refs_;  // every parameter the code below reads, resolved once
  Device* device_;
  DType dtype_ = DType::kF32;
  Recompute recompute_ = Recompute::kNone;
  Tensor params_, grads_;                  // the table's elements
  Tensor params_storage_, grads_storage_;  // the same, padded (PadBuffers)

  int64_t B_ = 0, T_ = 0;
  int64_t Ns_ = 0;  // rows of the activations between blocks: B*T, or B*T/tp with SP
  Communicator* tp_ = nullptr;
  int tp_size_ = 1, tp_rank_ = 0;
  bool dry_run_ = false;  // MeasureActivations: Alloc counts bytes and allocates nothing
  bool sp_ = false;
  Communicator* cp_ = nullptr;
  int cp_size_ = 1, cp_rank_ = 0;
  std::unique_ptr<RingAttention> ring_;
  // [B, T, qkv]: blocks in flight around the ring; dK/dV accumulators in flight and a partial.
  Tensor ring_kv_[2], ring_dkv_[3];
  Tensor cp_positions_;            // i32 [B, T]: this cp rank's global positions (cp > 1)
  std::vector<Tensor> positions_;  // SetPositions
  Tensor cur_positions_;           // the running micro-batch's (undefined: 0..T-1)
  int heads_ = 0, kv_heads_ = 0;  // local heads
  int64_t vocab_start_ = 0, local_vocab_ = 0, valid_local_vocab_ = 0;
  GradReadyHook grad_ready_;
  bool final_backward_ = true;
  int64_t scratch_bytes_ = 0, slot_bytes_ = 0;
  CommTimes comm_;
  std::vector<std::vector<Slot>> slots_;  // [chunk][slot]
  std::vector<LayerActs> shared_acts_;    // full recompute: one layer's, rebuilt in backward
  Tensor act_scratch_;                    // selective recompute: the MLP activation [N, F]
  Tensor chunk_output_;
  Tensor gathered_;  // [N, C]: an all-gathered norm output (SP)
  Tensor row_max_, sum_exp_, target_logit_;  // vocab-parallel cross-entropy, f32 [N]
  Tensor targets_dev_;
  std::vector<Tensor> segments_;  // SetSegments
  Tensor cur_segments_;           // the running micro-batch's (undefined: none)
  absl::Status SelectSegments(int mb);
  const Tensor* CurSegments() const { return cur_segments_.defined() ? &cur_segments_ : nullptr; }
  Tensor deferred_;  // DeferLosses' rows (undefined: losses are read per head forward)
  int64_t deferred_next_ = 0;
  Tensor proj_;  // forward scratch: output of a projection before its residual add ([N, C])
  Tensor proj_s_;  // its reduce-scattered rows (SP)
  Tensor normf_, meanf_, rstdf_, logits_, losses_;
  // Backward scratch.
  Tensor d_res_, d_tmp_, d_norm_, d_qkv_, d_atty_, d_fc_, d_act_;
  Tensor d_full_;    // [N, C]: all rows of d_res_ (SP; otherwise d_res_ itself)
  Tensor d_norm_s_;  // this rank's rows of d_norm_ after its reduction (SP; otherwise d_norm_)
  bool split_backward_ = false;
  Slot* deferring_ = nullptr;  // during ChunkBackwardInput: the slot W's work is recorded in
};

}  // namespace loom
