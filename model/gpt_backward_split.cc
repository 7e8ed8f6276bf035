// The backward split of GptModel (ZERO_BUBBLE pipelines, docs/pipeline.md): every point of the
// backward pass that produces a parameter gradient goes through LinearGrads, NormGrads,
// EmbeddingGrads or ParamsReady. Outside ChunkBackwardInput they run the fused op at once (the
// plain backward). Inside it they run only the input-gradient half (B) and record the rest as
// a WeightTask in the slot, with views of what it reads: slot tensors as they are (the slot
// stays taken until W), shared buffers copied into the slot's stash, except that the output
// gradients of the qkv and fc GEMMs go into the slot's own qkv and fc activations, which B has
// finished with by then (without full recomputation): the stash holds about a third less.
// ChunkBackwardWeight (W) replays the tasks in the order recorded, so gradients accumulate in the
// same order, with the same kernels, as the fused backward's.
//
// Per op: a linear's B is its dX GEMM and its W the dW GEMM and bias sums
// (ops::LinearBackwardInput / LinearBackwardWeight, both backends); attention, RoPE and the
// activations have no weights (B only); a norm's B is its fused backward with the gamma/beta
// gradients sent to scratch, its W the same kernel again with dx sent to scratch (a norm is one
// pass over [rows, C], cheap beside the GEMMs, and this keeps one kernel per backend); the
// embedding is W only (it has no input gradient).
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
  const DType dt = dtype_, f32 = DType::kF32;
  const bool full = recompute_ == Recompute::kFull, layer_norm = !config_.is_llama();
  std::vector<std::pair<Shape, DType>> plan;
  auto add = [&plan](Shape s, DType d) { plan.emplace_back(std::move(s), d); };
  auto norm_stats = [&]() {
    if (layer_norm) add(Shape{Ns}, f32);
    add(Shape{Ns}, f32);
  };
  // In LayerBackward's order: each GEMM's output gradient, then its input when not in the slot;
  // each norm's output gradient, then its input and statistics when not in the slot.
  for (int j = 0; j < stage_.chunks[chunk].layers; ++j) {
    add(Shape{N, C}, dt);                                      // MLP out: dL/d(block output)
    if (recompute_ != Recompute::kNone) add(Shape{N, F}, dt);  // the recomputed activation
    if (full) add(Shape{N, fc_width}, dt);  // MLP fc: dL/d(fc output); else in the slot's fc
    if (sp_ || full) add(Shape{N, C}, dt);  // its input, gathered or rebuilt
    add(Shape{Ns, C}, dt);                  // norm 2: dL/d(norm output)
    if (full) {
      add(Shape{Ns, C}, dt);  // its input (res2)
      norm_stats();
    }
    add(Shape{N, C}, dt);                   // attention out projection: dL/d(res2)
    if (full) add(Shape{N, attn}, dt);      // its input (attention output)
    if (full) add(Shape{N, qkv}, dt);       // qkv: dL/d(qkv); else in the slot's qkv
    if (sp_ || full) add(Shape{N, C}, dt);  // its input
    add(Shape{Ns, C}, dt);                  // norm 1: dL/d(norm output); its input is in the slot
    if (full) norm_stats();
  }
  if (ChunkHasEmbedding(chunk)) add(Shape{N, C}, dt);  // dL/d(embedding output)
  return plan;
}

absl::StatusOr<Tensor> GptModel::Keep(const Tensor& t, bool in_slot, const Tensor* dead) {
  if (in_slot) return t;
  if (dead != nullptr) {
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

absl::Status GptModel::LinearGrads(const Tensor& dout, const Tensor& inp, bool inp_in_slot,
                                   ParamRef w, ParamRef b, const Tensor* dinp, const Tensor* dead) {
  Tensor db;
  if (b.held()) db = G(b);
  if (deferring_ == nullptr) {
    LOOM_TIMED_OP("linear",
                  ops::LinearBackward(dout, inp, P(w), dinp, G(w), b.held() ? &db : nullptr));
    return absl::OkStatus();
  }
  if (dinp != nullptr) LOOM_TIMED_OP("linear", ops::LinearBackwardInput(dout, P(w), *dinp));
  WeightTask task{WeightTask::kLinear};
  LOOM_ASSIGN_OR_RETURN(task.dout, Keep(dout, false, dead));
  LOOM_ASSIGN_OR_RETURN(task.in, Keep(inp, inp_in_slot));
  task.w = w;
  task.b = b;
  deferring_->w_tasks.push_back(std::move(task));
  return absl::OkStatus();
}

absl::Status GptModel::NormGrads(const Tensor& dout, const Tensor& x, bool x_in_slot, ParamRef w,
                                 ParamRef b, const Tensor& mean, const Tensor& rstd,
                                 bool stats_in_slot, const Tensor& dx) {
  const bool layer_norm = !config_.is_llama();
  const bool defer = deferring_ != nullptr;
  // B: the gamma/beta gradients go to scratch (never read); W below writes the real ones.
  const Tensor dw = defer ? norm_dw_ : G(w);
  const Tensor db = defer ? norm_db_ : (layer_norm ? G(b) : Tensor());
  if (layer_norm) {
    LOOM_TIMED_OP("norm", ops::LayerNormBackward(dout, x, P(w), mean, rstd, dx, dw, db));
  } else {
    LOOM_TIMED_OP("norm", ops::RMSNormBackward(dout, x, P(w), rstd, dx, dw));
  }
  if (!defer) return absl::OkStatus();
  WeightTask task{WeightTask::kNorm};
  LOOM_ASSIGN_OR_RETURN(task.dout, Keep(dout, false));
  LOOM_ASSIGN_OR_RETURN(task.in, Keep(x, x_in_slot));
  if (layer_norm) {
    LOOM_ASSIGN_OR_RETURN(task.mean, Keep(mean, stats_in_slot));
  }
  LOOM_ASSIGN_OR_RETURN(task.rstd, Keep(rstd, stats_in_slot));
  task.w = w;
  task.b = layer_norm ? b : ParamRef{};
  deferring_->w_tasks.push_back(std::move(task));
  return absl::OkStatus();
}

absl::Status GptModel::EmbeddingGrads(const Tensor& tokens, const Tensor& dout,
                                      bool with_positions) {
  WeightTask task{WeightTask::kEmbedding};
  task.in = tokens;  // the slot's
  task.w = refs_.wte;
  task.b = with_positions ? refs_.wpe : ParamRef{};
  task.positions = cur_positions_;  // the micro-batch's, still valid when W runs
  if (deferring_ == nullptr) {
    task.dout = dout;
    return RunWeightTask(task);
  }
  LOOM_ASSIGN_OR_RETURN(task.dout, Keep(dout, false));
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
  switch (t.kind) {
    case WeightTask::kLinear: {
      Tensor db;
      if (t.b.held()) db = G(t.b);
      LOOM_TIMED_OP("linear", ops::LinearBackwardWeight(t.dout, t.in, P(t.w), G(t.w),
                                                        t.b.held() ? &db : nullptr));
      return absl::OkStatus();
    }
    case WeightTask::kNorm:
      // dx goes to d_tmp_, backward scratch that W may overwrite (ChunkInputGrad is d_res_).
      if (t.b.held()) {
        LOOM_TIMED_OP("norm", ops::LayerNormBackward(t.dout, t.in, P(t.w), t.mean, t.rstd, d_tmp_,
                                                     G(t.w), G(t.b)));
      } else {
        LOOM_TIMED_OP("norm", ops::RMSNormBackward(t.dout, t.in, P(t.w), t.rstd, d_tmp_, G(t.w)));
      }
      return absl::OkStatus();
    case WeightTask::kEmbedding: {
      Tensor g_wpe;
      if (t.b.held()) g_wpe = G(t.b);
      LOOM_ASSIGN_OR_RETURN(Tensor dout3, t.dout.Reshape(Shape{B_, T_, config_.hidden}));
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
