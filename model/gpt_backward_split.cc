// The backward split of GptModel (ZERO_BUBBLE pipelines, docs/pipeline.md): every point of the
// backward pass that produces a parameter gradient goes through LinearGrads, NormGrads,
// EmbeddingGrads or ParamsReady. Outside ChunkBackwardInput they run the fused op at once (the
// plain backward). Inside it they run only the input-gradient half (B) and record the rest as
// a WeightTask in the slot, with views of what it reads.
//
// Memory: W keeps alive only what the weight GEMMs read (each one's input and output gradient)
// and holds it in the plain backward's own slot, in tensors B has finished with: the output
// gradients of the qkv and fc GEMMs in the slot's qkv and fc (dead once attention and the
// activation function have run backward), the MLP output's in the layer's output res3 (the next
// layer's input, whose backward ran before), the attention projection's in res2 (dead once
// norm 2 has run backward), the embedding's in the chunk's input. With sequence parallelism
// these are the rank's rows, which W gathers again (as B did) rather than keeping gathered
// copies; the GEMMs' inputs are slot tensors already. So without recomputation a ZERO_BUBBLE
// slot is exactly a 1F1B slot. Recomputation rebuilds tensors outside the slot; those W reads
// are copied into the slot's stash (WeightStashPlan). The norms are not split: their fused
// kernel gives gamma's and beta's gradients with dx in one pass over [rows, C], and deferring
// them would keep each norm's input and output gradient until W.
// ChunkBackwardWeight (W) replays the tasks in the order recorded, so gradients accumulate in the
// same order, with the same kernels, as the fused backward's.
//
// Per op: a linear's B is its dX GEMM and its W the dW GEMM and bias sums
// (ops::LinearBackwardInput / LinearBackwardWeight, both backends); attention, RoPE, the
// activations and the norms run wholly in B; the embedding is W only (it has no input gradient).
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/gpt.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "runtime/profiler.h"
#include "runtime/status.h"

#define LOOM_TIMED_OP(family, expr)                            \
  do {                                                         \
    ::loom::OpProfiler::Scope loom_op_scope_(family, device_); \
    LOOM_RETURN_IF_ERROR(expr);                                \
  } while (0)

namespace loom {

absl::Status GptModel::set_split_backward(bool split) {
  for (const auto& chunk : slots_) {
    for (const Slot& s : chunk) {
      if (s.mb >= 0) {
        return absl::FailedPreconditionError(absl::StrCat("set_split_backward: micro-batch ", s.mb,
                                                          " is still in flight; finish it first"));
      }
    }
  }
  split_backward_ = split;
  // The slots are rebuilt with (or without) the weight-gradient buffers on their next use.
  slots_.assign(stage_.chunks.size(), {});
  slot_bytes_ = 0;
  return absl::OkStatus();
}

std::vector<std::pair<Shape, DType>> GptModel::WeightStashPlan(int chunk) const {
  const int64_t N = B_ * T_, Ns = Ns_, C = config_.hidden, hd = config_.head_dim();
  const int64_t F = config_.ffn_hidden / tp_size_;
  const int64_t fc_width = config_.is_llama() ? 2 * F : F;
  const int64_t qkv = (heads_ + 2 * kv_heads_) * hd, attn = heads_ * hd;
  const DType dt = dtype_;
  const bool full = recompute_ == Recompute::kFull;
  std::vector<std::pair<Shape, DType>> plan;
  auto add = [&plan](Shape s, DType d) { plan.emplace_back(std::move(s), d); };
  // In LayerBackward's order, what W reads that lives outside the slot: under recomputation
  // the rebuilt tensors (full: every GEMM input and the output gradients the shared layer
  // buffers held). Without recomputation nothing: the slot holds it all.
  for (int j = 0; j < stage_.chunks[chunk].layers; ++j) {
    // MLP out: its output gradient goes into the layer's output (res3); its input is the
    // activation, rebuilt under recomputation.
    if (recompute_ != Recompute::kNone) add(Shape{N, F}, dt);
    if (full) {
      add(Shape{N, fc_width}, dt);  // MLP fc: dL/d(fc output); else in the slot's fc
      add(Shape{Ns, C}, dt);        // its input (norm 2's output rows)
      add(Shape{Ns, C}, dt);        // attention out projection: dL/d(res2) rows; else in res2
      add(Shape{N, attn}, dt);      // its input (attention output)
      add(Shape{N, qkv}, dt);       // qkv: dL/d(qkv); else in the slot's qkv
      add(Shape{Ns, C}, dt);        // its input (norm 1's output rows)
    }
  }
  return plan;
}

absl::StatusOr<Tensor> GptModel::Keep(const WeightOperand& op) {
  const Tensor& t = op.t;
  if (op.in_slot) return t;
  if (op.dead != nullptr) {
    const Tensor* dead = op.dead;
    if (dead->shape() != t.shape() || dead->dtype() != t.dtype()) {
      return absl::InternalError(absl::StrCat("split backward: the freed slot tensor ",
                                              dead->DebugString(), " cannot keep ",
                                              t.DebugString()));
    }
    LOOM_RETURN_IF_ERROR(dead->CopyFrom(t));
    return *dead;
  }
  Slot& s = *deferring_;
  if (s.stash_next >= s.stash.size()) {
    return absl::InternalError(absl::StrCat("split backward: the slot's weight-gradient buffers (",
                                            s.stash.size(), ") are fewer than the tensors kept; ",
                                            "WeightStashPlan is out of step with the backward"));
  }
  const Tensor& dst = s.stash[s.stash_next];
  if (dst.shape() != t.shape() || dst.dtype() != t.dtype()) {
    return absl::InternalError(absl::StrCat(
        "split backward: weight-gradient buffer ", s.stash_next, " is ", dst.DebugString(),
        " but the tensor kept there is ", t.DebugString(), "; WeightStashPlan is out of step"));
  }
  ++s.stash_next;
  LOOM_RETURN_IF_ERROR(dst.CopyFrom(t));
  return dst;
}

absl::Status GptModel::LinearGrads(const Tensor& dout, const Tensor& inp, ParamRef w, ParamRef b,
                                   const Tensor* dinp, const WeightOperand& keep_dout,
                                   const WeightOperand& keep_in) {
  Tensor db;
  if (b.held()) db = G(b);
  if (deferring_ == nullptr) {
    LOOM_TIMED_OP("linear",
                  ops::LinearBackward(dout, inp, P(w), dinp, G(w), b.held() ? &db : nullptr));
    return absl::OkStatus();
  }
  if (dinp != nullptr) LOOM_TIMED_OP("linear", ops::LinearBackwardInput(dout, P(w), *dinp));
  WeightTask task{WeightTask::kLinear};
  LOOM_ASSIGN_OR_RETURN(task.dout, Keep(keep_dout));
  LOOM_ASSIGN_OR_RETURN(task.in, Keep(keep_in));
  task.gather_dout = keep_dout.gathered;
  task.gather_in = keep_in.gathered;
  task.w = w;
  task.b = b;
  deferring_->w_tasks.push_back(std::move(task));
  return absl::OkStatus();
}

absl::Status GptModel::NormGrads(const Tensor& dout, const Tensor& x, ParamRef w, ParamRef b,
                                 const Tensor& mean, const Tensor& rstd, const Tensor& dx) {
  if (!config_.is_llama()) {
    LOOM_TIMED_OP("norm", ops::LayerNormBackward(dout, x, P(w), mean, rstd, dx, G(w), G(b)));
  } else {
    LOOM_TIMED_OP("norm", ops::RMSNormBackward(dout, x, P(w), rstd, dx, G(w)));
  }
  return absl::OkStatus();
}

absl::Status GptModel::EmbeddingGrads(const Tensor& tokens, const Tensor& dout, bool with_positions,
                                      const WeightOperand& keep_dout) {
  WeightTask task{WeightTask::kEmbedding};
  task.in = tokens;  // the slot's
  task.w = refs_.wte;
  task.b = with_positions ? refs_.wpe : ParamRef{};
  task.positions = cur_positions_;  // the micro-batch's, still valid when W runs
  if (deferring_ == nullptr) {
    task.dout = dout;
    return RunWeightTask(task);
  }
  LOOM_ASSIGN_OR_RETURN(task.dout, Keep(keep_dout));
  task.gather_dout = keep_dout.gathered;
  deferring_->w_tasks.push_back(std::move(task));
  return absl::OkStatus();
}

absl::Status GptModel::ParamsReady(const std::vector<ParamRef>& refs) {
  if (deferring_ == nullptr) return GradsReady(refs);
  WeightTask task{WeightTask::kReady};
  task.ready = refs;
  deferring_->w_tasks.push_back(std::move(task));
  return absl::OkStatus();
}

absl::Status GptModel::RunWeightTask(const WeightTask& t) {
  // Sequence parallelism: B kept this rank's rows; gather them again as B did (the same
  // collective, so the same values) into the backward's full-row scratch, free during W.
  Tensor dout = t.dout, in = t.in;
  if (t.gather_dout) {
    LOOM_TIMED_OP("sp_comm", GatherRows(t.dout, d_full_));
    dout = d_full_;
  }
  if (t.gather_in) {
    LOOM_TIMED_OP("sp_comm", GatherRows(t.in, gathered_));
    in = gathered_;
  }
  switch (t.kind) {
    case WeightTask::kLinear: {
      Tensor db;
      if (t.b.held()) db = G(t.b);
      LOOM_TIMED_OP("linear", ops::LinearBackwardWeight(dout, in, P(t.w), G(t.w),
                                                        t.b.held() ? &db : nullptr));
      return absl::OkStatus();
    }
    case WeightTask::kEmbedding: {
      Tensor g_wpe;
      if (t.b.held()) g_wpe = G(t.b);
      LOOM_ASSIGN_OR_RETURN(Tensor dout3, dout.Reshape(Shape{B_, T_, config_.hidden}));
      // The position gradient scatters by the tokens' positions (reset ones, or with cp this
      // rank's global ones).
      LOOM_TIMED_OP("embedding", ops::EmbeddingBackward(
                                     t.in, dout3, G(t.w), t.b.held() ? &g_wpe : nullptr,
                                     vocab_start_, t.positions.defined() ? &t.positions : nullptr));
      return absl::OkStatus();
    }
    case WeightTask::kReady:
      return GradsReady(t.ready);
  }
  return absl::InternalError("unknown weight task");
}

absl::Status GptModel::ChunkBackwardInput(int chunk, int mb) {
  if (!split_backward_) {
    return absl::FailedPreconditionError(
        "ChunkBackwardInput: the model's slots have no weight-gradient buffers; call "
        "set_split_backward(true) before the step");
  }
  LOOM_ASSIGN_OR_RETURN(Slot * slot, FindSlot(chunk, mb, "the input-gradient backward (B)"));
  if (slot->input_grad_done) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the input-gradient backward (B) of micro-batch ", mb, " on chunk ", chunk, " runs twice"));
  }
  slot->w_tasks.clear();
  slot->stash_next = 0;
  deferring_ = slot;
  absl::Status s = BackwardBody(chunk, *slot);
  deferring_ = nullptr;
  LOOM_RETURN_IF_ERROR(s);
  if (slot->stash_next != slot->stash.size()) {
    return absl::InternalError(absl::StrCat("split backward: ", slot->stash_next, " of the slot's ",
                                            slot->stash.size(),
                                            " weight-gradient buffers used; WeightStashPlan is "
                                            "out of step with the backward"));
  }
  slot->input_grad_done = true;
  return absl::OkStatus();
}

absl::Status GptModel::ChunkBackwardWeight(int chunk, int mb) {
  LOOM_ASSIGN_OR_RETURN(Slot * slot, FindSlot(chunk, mb, "the weight-gradient backward (W)"));
  if (!slot->input_grad_done) {
    return absl::FailedPreconditionError(
        absl::StrCat("the weight-gradient backward (W) of micro-batch ", mb, " on chunk ", chunk,
                     " runs before its input-gradient backward (B)"));
  }
  for (const WeightTask& t : slot->w_tasks) LOOM_RETURN_IF_ERROR(RunWeightTask(t));
  slot->w_tasks.clear();
  slot->input_grad_done = false;
  slot->mb = -1;
  return absl::OkStatus();
}

}  // namespace loom
