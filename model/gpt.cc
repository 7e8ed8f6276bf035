#include "model/gpt.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "runtime/profiler.h"
#include "runtime/status.h"
#include "runtime/timer.h"

// Runs one op, charging its time to `family` when the profiler is on (loom bench step).
#define LOOM_TIMED_OP(family, expr)                            \
  do {                                                         \
    ::loom::OpProfiler::Scope loom_op_scope_(family, device_); \
    LOOM_RETURN_IF_ERROR(expr);                                \
  } while (0)

namespace loom {

GptModel::GptModel(const GptConfig& config, Device* device, ParamTable layout)
    : config_(config), layout_(std::move(layout)), device_(device) {}

float GptModel::MeanLoss(const float* rows, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += rows[i];
  return static_cast<float>(sum / static_cast<double>(n));
}

const char* RecomputeName(Recompute r) {
  switch (r) {
    case Recompute::kNone:
      return "none";
    case Recompute::kSelective:
      return "selective";
    case Recompute::kFull:
      return "full";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<GptModel>> GptModel::Create(const GptConfig& config, Device* device,
                                                           DType dtype, TensorParallelism tpar,
                                                           GptStage stage, Recompute recompute) {
  LOOM_RETURN_IF_ERROR(config.Validate());
  LOOM_ASSIGN_OR_RETURN(stage, ResolveGptStage(config, stage));
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("model compute dtype must be f32 or bf16, got ",
                                                   std::string(DTypeName(dtype))));
  }
  const int tp = tpar.tp != nullptr ? tpar.tp->size() : 1;
  const int tp_rank = tpar.tp != nullptr ? tpar.tp->rank() : 0;
  LOOM_ASSIGN_OR_RETURN(ParamTable table, GptParamTable(config, tp, tp_rank, stage));
  std::unique_ptr<GptModel> m(new GptModel(config, device, std::move(table)));
  LOOM_ASSIGN_OR_RETURN(m->refs_, ResolveGptParams(config, stage, m->layout_));
  m->stage_ = std::move(stage);
  m->recompute_ = recompute;
  m->dtype_ = dtype;
  m->tp_ = tp > 1 ? tpar.tp : nullptr;
  m->tp_size_ = tp;
  m->tp_rank_ = tp_rank;
  m->sp_ = tpar.sequence_parallel && tp > 1;
  if (tpar.cp != nullptr && tpar.cp->size() > 1) {
    m->cp_ = tpar.cp;
    m->cp_size_ = tpar.cp->size();
    m->cp_rank_ = tpar.cp->rank();
    m->ring_ = std::make_unique<RingAttention>(tpar.cp);
  }
  m->heads_ = config.heads / tp;
  m->kv_heads_ = config.kv_heads / tp;
  m->local_vocab_ = config.padded_vocab / tp;
  m->vocab_start_ = tp_rank * m->local_vocab_;
  m->valid_local_vocab_ = std::clamp<int64_t>(config.vocab - m->vocab_start_, 0, m->local_vocab_);
  LOOM_ASSIGN_OR_RETURN(m->params_, Tensor::Zeros(Shape{m->layout_.total()}, m->dtype_, device));
  // Gradients are fp32 whatever the compute dtype: micro-batches accumulate into them and the
  // data-parallel reduction sums them, both of which lose too much in bf16.
  LOOM_ASSIGN_OR_RETURN(m->grads_, Tensor::Zeros(Shape{m->layout_.total()}, DType::kF32, device));
  m->params_storage_ = m->params_;
  m->grads_storage_ = m->grads_;
  return m;
}

absl::Status GptModel::PadBuffers(int64_t multiple) {
  if (multiple < 1) {
    return absl::InvalidArgumentError(absl::StrCat("PadBuffers: multiple ", multiple, " < 1"));
  }
  const int64_t total = layout_.total();
  const int64_t padded = (total + multiple - 1) / multiple * multiple;
  if (padded == params_storage_.numel()) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(Tensor p, Tensor::Zeros(Shape{padded}, dtype_, device_));
  LOOM_ASSIGN_OR_RETURN(Tensor g, Tensor::Zeros(Shape{padded}, DType::kF32, device_));
  LOOM_RETURN_IF_ERROR(p.FlatView(0, total).CopyFrom(params_));
  params_storage_ = p;
  grads_storage_ = g;
  params_ = p.FlatView(0, total);
  grads_ = g.FlatView(0, total);
  return absl::OkStatus();
}

Tensor GptModel::Param(const ParamSpec& s) const {
  return *params_.FlatView(s.offset, s.numel()).Reshape(s.shape);
}
Tensor GptModel::Grad(const ParamSpec& s) const {
  return *grads_.FlatView(s.offset, s.numel()).Reshape(s.shape);
}

absl::StatusOr<Tensor> GptModel::ParamByName(const std::string& name) const {
  LOOM_ASSIGN_OR_RETURN(const ParamSpec* s, layout_.Find(name));
  return Param(*s);
}

absl::Status GptModel::ZeroGrads() { return grads_storage_.Fill0(); }

absl::Status GptModel::TpAllReduce(const Tensor& t, ReduceOp op) {
  if (tp_ == nullptr) return absl::OkStatus();
  Timer timer;
  absl::Status s = tp_->AllReduce(t, op);
  comm_.tp_seconds += timer.Seconds();
  return s;
}

absl::Status GptModel::GatherRows(const Tensor& shard, const Tensor& full) {
  Timer timer;
  absl::Status s = tp_->AllGather(shard, full);
  comm_.sp_seconds += timer.Seconds();
  return s;
}

absl::Status GptModel::ScatterRows(const Tensor& full, const Tensor& shard) {
  Timer timer;
  absl::Status s = tp_->ReduceScatter(full, shard, ReduceOp::kSum);
  comm_.sp_seconds += timer.Seconds();
  return s;
}

absl::Status GptModel::ReduceRowParallel(const Tensor& full, const Tensor& shard) {
  if (sp_) return ScatterRows(full, shard);
  return TpAllReduce(full);
}

absl::Status GptModel::ReduceInputGrad(const Tensor& partial_full, const Tensor& shard) {
  return ReduceRowParallel(partial_full, shard);
}

absl::Status GptModel::GradsReady(const std::vector<ParamRef>& refs) {
  if (!final_backward_) return absl::OkStatus();
  for (ParamRef r : refs) {
    if (!r.held()) continue;
    const ParamSpec& spec = layout_.specs()[r.index];
    // Under sequence parallelism each rank computed this replicated parameter's gradient from
    // its own rows (or, for row-parallel biases and positions, rank 0 alone): sum them.
    if (sp_ && spec.grad_replicated_over_tp()) LOOM_RETURN_IF_ERROR(TpAllReduce(Grad(spec)));
    if (grad_ready_) LOOM_RETURN_IF_ERROR(grad_ready_(r.index));
  }
  return absl::OkStatus();
}

// The input of a column-parallel GEMM: the norm output itself, or with sequence parallelism all
// rows of it gathered from the tensor group.
#define LOOM_FULL_ROWS(out, shard)                          \
  Tensor out = shard;                                       \
  if (sp_) {                                                \
    LOOM_TIMED_OP("tp_comm", GatherRows(shard, gathered_)); \
    out = gathered_;                                        \
  }

absl::Status GptModel::EmbeddingForward(const Tensor& tokens, const Tensor& out) {
  const GptConfig& c = config_;
  Tensor wpe;
  if (!c.is_llama()) wpe = P(refs_.wpe);
  // Position embeddings are added once, by tensor rank 0, before the reduction (at the tokens'
  // positions: CurPositions, selected by the caller).
  const Tensor* wpe_here = (!c.is_llama() && tp_rank_ == 0) ? &wpe : nullptr;
  // With SP the embedding of all rows goes to proj_ and is reduce-scattered into this rank's.
  const Tensor& emb_full = sp_ ? proj_ : out;
  LOOM_ASSIGN_OR_RETURN(Tensor emb3, emb_full.Reshape(Shape{B_, T_, c.hidden}));
  LOOM_TIMED_OP("embedding", ops::EmbeddingForward(tokens, P(refs_.wte), wpe_here, emb3,
                                                   vocab_start_, CurPositions()));
  if (tp_ != nullptr) LOOM_TIMED_OP(sp_ ? "sp_comm" : "tp_comm", ReduceRowParallel(emb_full, out));
  return absl::OkStatus();
}

absl::Status GptModel::LayerForward(int l, const Tensor& x, LayerActs& a) {
  const GptConfig& c = config_;
  const bool llama = c.is_llama();
  const float eps = c.norm_eps;
  const int64_t B = B_, T = T_;
  const bool rank0 = tp_rank_ == 0;
  // The row-parallel reduction's result: proj_ (all-reduced) or its rows proj_s_ (SP).
  const Tensor& proj_out = proj_s_;
  const char* row_comm = sp_ ? "sp_comm" : "tp_comm";
  const GptParamRefs::Layer& L = refs_.layers[l];
  if (llama) {
    LOOM_TIMED_OP("norm", ops::RMSNormForward(x, P(L.norm1_w), eps, a.norm1, a.rstd1));
    LOOM_FULL_ROWS(in1, a.norm1);
    LOOM_TIMED_OP("linear", ops::LinearForward(in1, P(L.qkv_w), nullptr, a.qkv));
  } else {
    LOOM_TIMED_OP("norm", ops::LayerNormForward(x, P(L.norm1_w), P(L.norm1_b), eps, a.norm1,
                                                a.mean1, a.rstd1));
    LOOM_FULL_ROWS(in1, a.norm1);
    Tensor qkv_b = P(L.qkv_b);
    LOOM_TIMED_OP("linear", ops::LinearForward(in1, P(L.qkv_w), &qkv_b, a.qkv));
  }
  const int64_t qkv_dim = a.qkv.dim(1), attn_dim = a.atty.dim(1);
  LOOM_ASSIGN_OR_RETURN(Tensor qkv3, a.qkv.Reshape(Shape{B, T, qkv_dim}));
  LOOM_ASSIGN_OR_RETURN(Tensor atty3, a.atty.Reshape(Shape{B, T, attn_dim}));
  if (llama) LOOM_TIMED_OP("rope", Rope(qkv3, /*inverse=*/false));
  LOOM_TIMED_OP("attention", Attention(qkv3, atty3, a.lse));
  if (llama) {
    LOOM_TIMED_OP("linear", ops::LinearForward(a.atty, P(L.proj_w), nullptr, proj_));
    if (tp_ != nullptr) LOOM_TIMED_OP(row_comm, ReduceRowParallel(proj_, proj_s_));
    LOOM_TIMED_OP("norm", ops::FusedResidualRMSNormForward(x, proj_out, P(L.norm2_w), eps, a.res2,
                                                           a.norm2, a.rstd2));
    LOOM_FULL_ROWS(in2, a.norm2);
    LOOM_TIMED_OP("linear", ops::LinearForward(in2, P(L.fc_w), nullptr, a.fc));
    LOOM_TIMED_OP("activation", ops::SwiGLUForward(a.fc, a.act));
    LOOM_TIMED_OP("linear", ops::LinearForward(a.act, P(L.out_w), nullptr, proj_));
  } else {
    Tensor proj_b = P(L.proj_b);
    LOOM_TIMED_OP("linear",
                  ops::LinearForward(a.atty, P(L.proj_w), rank0 ? &proj_b : nullptr, proj_));
    if (tp_ != nullptr) LOOM_TIMED_OP(row_comm, ReduceRowParallel(proj_, proj_s_));
    LOOM_TIMED_OP("norm",
                  ops::FusedResidualLayerNormForward(x, proj_out, P(L.norm2_w), P(L.norm2_b), eps,
                                                     a.res2, a.norm2, a.mean2, a.rstd2));
    LOOM_FULL_ROWS(in2, a.norm2);
    Tensor fc_b = P(L.fc_b);
    LOOM_TIMED_OP("linear", ops::LinearForward(in2, P(L.fc_w), &fc_b, a.act, &a.fc));
    Tensor mproj_b = P(L.out_b);
    LOOM_TIMED_OP("linear",
                  ops::LinearForward(a.act, P(L.out_w), rank0 ? &mproj_b : nullptr, proj_));
  }
  if (tp_ != nullptr) LOOM_TIMED_OP(row_comm, ReduceRowParallel(proj_, proj_s_));
  LOOM_TIMED_OP("residual", ops::Add(a.res2, proj_out, a.res3));
  return absl::OkStatus();
}

absl::Status GptModel::SelectSegments(int mb) {
  cur_segments_ = Tensor();
  if (segments_.empty()) return absl::OkStatus();
  if (mb < 0 || mb >= static_cast<int>(segments_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("micro-batch ", mb, " has no segment ids (",
                                                   segments_.size(), " set by SetSegments)"));
  }
  // With context parallelism every rank holds the whole sequence's ids (ring attention).
  const int64_t seq_len = T_ * cp_size_;
  if (segments_[mb].shape() != Shape{B_, seq_len}) {
    return absl::InvalidArgumentError(absl::StrCat("segment ids of micro-batch ", mb, " are ",
                                                   segments_[mb].shape().ToString(), ", expected [",
                                                   B_, ", ", seq_len, "]"));
  }
  cur_segments_ = segments_[mb];
  return absl::OkStatus();
}

absl::Status GptModel::RunChunkLayers(int chunk, Slot& slot) {
  LOOM_RETURN_IF_ERROR(SelectSegments(slot.mb));
  LOOM_RETURN_IF_ERROR(SelectPositions(slot.mb));
  const GptStage::Chunk& ch = stage_.chunks[chunk];
  const bool full = recompute_ == Recompute::kFull;
  Tensor x = slot.x_in;
  for (int j = 0; j < ch.layers; ++j) {
    // Full recomputation: every layer runs in the one shared set, its output kept in the slot.
    LayerActs& a = full ? shared_acts_[0] : slot.acts[j];
    if (full) a.res3 = slot.layer_out[j];
    LOOM_RETURN_IF_ERROR(LayerForward(ch.first_layer + j, x, a));
    x = a.res3;
  }
  chunk_output_ = x;
  return absl::OkStatus();
}

absl::StatusOr<float> GptModel::HeadForward(const Tensor& x_last, const Tensor& targets,
                                            float loss_weight, HeadMode mode, const Tensor& d_out) {
  const GptConfig& c = config_;
  const bool llama = c.is_llama();
  const float eps = c.norm_eps;
  if (llama) {
    LOOM_TIMED_OP("norm", ops::RMSNormForward(x_last, P(refs_.final_norm_w), eps, normf_, rstdf_));
  } else {
    LOOM_TIMED_OP("norm",
                  ops::LayerNormForward(x_last, P(refs_.final_norm_w), P(refs_.final_norm_b), eps,
                                        normf_, meanf_, rstdf_));
  }
  LOOM_FULL_ROWS(inf, normf_);
  LOOM_TIMED_OP("linear", ops::LinearForward(inf, P(refs_.head), nullptr, logits_));
  if (mode == HeadMode::kLogits) return 0.0f;
  const bool backward = mode == HeadMode::kTrain;
  LOOM_RETURN_IF_ERROR(targets_dev_.CopyFrom(targets));
  const int64_t N = B_ * T_;
  const float dloss = loss_weight / static_cast<float>(N);
  const Tensor* dlogits = backward ? &logits_ : nullptr;
  if (tp_ == nullptr) {
    LOOM_TIMED_OP("cross_entropy", ops::CrossEntropyForwardBackward(logits_, targets_dev_, losses_,
                                                                    dlogits, dloss, config_.vocab));
  } else {
    // Vocab-parallel: max, sum of exponentials and target logit reduced over the tensor group.
    LOOM_TIMED_OP("cross_entropy", ops::LogitsRowMax(logits_, row_max_, valid_local_vocab_));
    LOOM_TIMED_OP("tp_comm", TpAllReduce(row_max_, ReduceOp::kMax));
    LOOM_TIMED_OP("cross_entropy",
                  ops::LogitsSumExp(logits_, row_max_, sum_exp_, valid_local_vocab_));
    LOOM_TIMED_OP("cross_entropy",
                  ops::TargetLogit(logits_, targets_dev_, vocab_start_, target_logit_));
    LOOM_TIMED_OP("tp_comm", TpAllReduce(sum_exp_));
    LOOM_TIMED_OP("tp_comm", TpAllReduce(target_logit_));
    LOOM_TIMED_OP("cross_entropy", ops::VocabParallelCrossEntropyFinish(
                                       logits_, targets_dev_, vocab_start_, row_max_, sum_exp_,
                                       target_logit_, losses_, dlogits, dloss, valid_local_vocab_));
  }
  float loss = 0.0f;
  if (deferred_.defined()) {
    if (deferred_.rank() != 2 || deferred_.dim(1) != N || deferred_next_ >= deferred_.dim(0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deferred losses: head forward ", deferred_next_ + 1, " of ", N,
          " rows does not fit the rows given to DeferLosses, ", deferred_.DebugString()));
    }
    // Device to device, queued: nothing waits here.
    LOOM_RETURN_IF_ERROR(deferred_.Slice(deferred_next_, deferred_next_ + 1).CopyFrom(losses_));
    ++deferred_next_;
  } else {
    LOOM_ASSIGN_OR_RETURN(std::vector<float> losses, losses_.ToFloatVector());
    loss = MeanLoss(losses.data(), N);
  }
  if (!backward) return loss;
  // The head's backward now: logits_ holds dlogits (the cross-entropy wrote them in place);
  // with SP, gathered_ still holds the gathered final-norm output.
  const char* row_comm = sp_ ? "sp_comm" : "tp_comm";
  LOOM_TIMED_OP("linear",
                ops::LinearBackward(logits_, inf, P(refs_.head), &d_norm_, G(refs_.head), nullptr));
  if (tp_ != nullptr) LOOM_TIMED_OP(row_comm, ReduceInputGrad(d_norm_, d_norm_s_));
  if (!c.tied_embeddings) LOOM_RETURN_IF_ERROR(GradsReady({refs_.head}));
  if (llama) {
    LOOM_TIMED_OP("norm", ops::RMSNormBackward(d_norm_s_, x_last, P(refs_.final_norm_w), rstdf_,
                                               d_out, G(refs_.final_norm_w)));
    LOOM_RETURN_IF_ERROR(GradsReady({refs_.final_norm_w}));
  } else {
    LOOM_TIMED_OP("norm",
                  ops::LayerNormBackward(d_norm_s_, x_last, P(refs_.final_norm_w), meanf_, rstdf_,
                                         d_out, G(refs_.final_norm_w), G(refs_.final_norm_b)));
    LOOM_RETURN_IF_ERROR(GradsReady({refs_.final_norm_w, refs_.final_norm_b}));
  }
  // A tied head on a stage without the embedding is a copy whose gradient is now complete.
  if (c.tied_embeddings && !stage_.embedding) LOOM_RETURN_IF_ERROR(GradsReady({refs_.head}));
  return loss;
}

absl::StatusOr<float> GptModel::ChunkForward(int chunk, int mb, const Tensor* tokens,
                                             const Tensor* targets, float loss_weight,
                                             HeadMode mode) {
  const bool embed = ChunkHasEmbedding(chunk), head = ChunkHasHead(chunk);
  if (embed && (tokens == nullptr || tokens->shape() != Shape{B_, T_})) {
    return absl::InvalidArgumentError(
        absl::StrCat("the embedding chunk needs tokens of shape [", B_, ", ", T_, "], got ",
                     tokens == nullptr ? std::string("none") : tokens->shape().ToString()));
  }
  if (head && mode != HeadMode::kLogits &&
      (targets == nullptr || targets->shape() != Shape{B_, T_})) {
    return absl::InvalidArgumentError(
        absl::StrCat("the head chunk needs targets of shape [", B_, ", ", T_, "], got ",
                     targets == nullptr ? std::string("none") : targets->shape().ToString()));
  }
  LOOM_ASSIGN_OR_RETURN(Slot * slot, TakeSlot(chunk, mb));
  if (embed) {
    LOOM_RETURN_IF_ERROR(SelectPositions(mb));
    LOOM_RETURN_IF_ERROR(slot->tokens.CopyFrom(*tokens));
    LOOM_RETURN_IF_ERROR(EmbeddingForward(slot->tokens, slot->x_in));
  }
  LOOM_RETURN_IF_ERROR(RunChunkLayers(chunk, *slot));
  float loss = 0.0f;
  if (head) {
    // kLogits passes no targets and HeadForward reads none; *nullptr would still be undefined
    // behaviour (UBSan, scripts/sanitize.sh).
    const Tensor no_targets;
    LOOM_ASSIGN_OR_RETURN(loss, HeadForward(chunk_output_, targets ? *targets : no_targets,
                                            loss_weight, mode, slot->d_out));
  }
  if (mode != HeadMode::kTrain) slot->mb = -1;  // no backward follows
  return loss;
}

absl::Status GptModel::LayerBackward(int l, const Tensor& x_in, LayerActs& a) {
  const GptConfig& c = config_;
  const bool llama = c.is_llama();
  const int64_t B = B_, T = T_;
  const bool rank0 = tp_rank_ == 0;
  const char* row_comm = sp_ ? "sp_comm" : "tp_comm";
  // Replicated parameters whose gradient needs all rows (row-parallel biases, positions): every
  // rank computes it from the full gradient without SP; rank 0 alone with SP (then summed).
  const bool full_row_grads_here = !sp_ || rank0;
  // What the weight GEMMs read, for when they are deferred (gpt_backward_split.cc): slot
  // tensors as they are, output gradients in slot tensors this backward has finished with,
  // rebuilt (recomputed) tensors copied aside; with SP the rows that were gathered.
  const bool full = recompute_ == Recompute::kFull;
  const bool act_in_slot = recompute_ == Recompute::kNone;
  const GptParamRefs::Layer& L = refs_.layers[l];
  // d_res_ holds dL/d(block output) for this rank's rows; the MLP branch first.
  if (sp_) LOOM_TIMED_OP("sp_comm", GatherRows(d_res_, d_full_));
  if (recompute_ == Recompute::kSelective) {
    // The MLP activation was not kept: rebuild it from its input.
    if (llama) {
      LOOM_TIMED_OP("activation", ops::SwiGLUForward(a.fc, a.act));
    } else {
      LOOM_TIMED_OP("activation", ops::GeluForward(a.fc, a.act));
    }
  }
  // The layer's output res3 is the next layer's input, whose backward ran: it keeps d_res_.
  LOOM_RETURN_IF_ERROR(LinearGrads(d_full_, a.act, L.out_w,
                                   full_row_grads_here ? L.out_b : ParamRef{}, &d_act_,
                                   {d_res_, sp_, false, &a.res3}, {a.act, false, act_in_slot}));
  if (llama) {
    LOOM_TIMED_OP("activation", ops::SwiGLUBackward(d_act_, a.fc, d_fc_));
  } else {
    LOOM_TIMED_OP("activation", ops::GeluBackward(d_act_, a.fc, d_fc_));
  }
  LOOM_FULL_ROWS(in2, a.norm2);
  // After the activation's backward the slot's fc is dead: it keeps fc's output gradient.
  LOOM_RETURN_IF_ERROR(LinearGrads(d_fc_, in2, L.fc_w, L.fc_b, &d_norm_,
                                   {d_fc_, false, false, full ? nullptr : &a.fc},
                                   {a.norm2, sp_, !full}));
  if (tp_ != nullptr) LOOM_TIMED_OP(row_comm, ReduceInputGrad(d_norm_, d_norm_s_));
  LOOM_RETURN_IF_ERROR(
      NormGrads(d_norm_s_, a.res2, L.norm2_w, L.norm2_b, a.mean2, a.rstd2, d_tmp_));
  LOOM_TIMED_OP("residual", ops::Add(d_res_, d_tmp_, d_res_));  // now dL/d res2
  // Attention branch.
  if (sp_) LOOM_TIMED_OP("sp_comm", GatherRows(d_res_, d_full_));
  // Norm 2 has run backward: res2 is dead and keeps d_res_ (not under full recomputation,
  // where res2 is the shared layer buffers').
  LOOM_RETURN_IF_ERROR(
      LinearGrads(d_full_, a.atty, L.proj_w, full_row_grads_here ? L.proj_b : ParamRef{}, &d_atty_,
                  {d_res_, sp_, false, full ? nullptr : &a.res2}, {a.atty, false, !full}));
  const int64_t qkv_dim = a.qkv.dim(1), attn_dim = a.atty.dim(1);
  LOOM_ASSIGN_OR_RETURN(Tensor qkv3, a.qkv.Reshape(Shape{B, T, qkv_dim}));
  LOOM_ASSIGN_OR_RETURN(Tensor atty3, a.atty.Reshape(Shape{B, T, attn_dim}));
  LOOM_ASSIGN_OR_RETURN(Tensor datty3, d_atty_.Reshape(Shape{B, T, attn_dim}));
  LOOM_ASSIGN_OR_RETURN(Tensor dqkv3, d_qkv_.Reshape(Shape{B, T, qkv_dim}));
  LOOM_TIMED_OP("attention", AttentionGrad(datty3, qkv3, atty3, a.lse, dqkv3));
  LOOM_FULL_ROWS(in1, a.norm1);
  if (llama) LOOM_TIMED_OP("rope", Rope(dqkv3, /*inverse=*/true));
  // After attention's backward the slot's qkv is dead: it keeps qkv's output gradient.
  LOOM_RETURN_IF_ERROR(LinearGrads(d_qkv_, in1, L.qkv_w, L.qkv_b, &d_norm_,
                                   {d_qkv_, false, false, full ? nullptr : &a.qkv},
                                   {a.norm1, sp_, !full}));
  if (tp_ != nullptr) LOOM_TIMED_OP(row_comm, ReduceInputGrad(d_norm_, d_norm_s_));
  LOOM_RETURN_IF_ERROR(NormGrads(d_norm_s_, x_in, L.norm1_w, L.norm1_b, a.mean1, a.rstd1, d_tmp_));
  LOOM_TIMED_OP("residual", ops::Add(d_res_, d_tmp_, d_res_));  // now dL/d x_in
  // In table order (LLaMA's unheld biases are passed over).
  return ParamsReady({L.norm1_w, L.norm1_b, L.qkv_w, L.qkv_b, L.proj_w, L.proj_b, L.norm2_w,
                      L.norm2_b, L.fc_w, L.fc_b, L.out_w, L.out_b});
}

absl::Status GptModel::EmbeddingBackward(const Tensor& tokens, const Tensor* dead) {
  const bool full_row_grads_here = !sp_ || tp_rank_ == 0;
  if (sp_) LOOM_TIMED_OP("sp_comm", GatherRows(d_res_, d_full_));
  // The embedding has no input gradient: its whole backward is weight gradients.
  LOOM_RETURN_IF_ERROR(EmbeddingGrads(tokens, d_full_, !config_.is_llama() && full_row_grads_here,
                                      {d_res_, sp_, false, dead}));
  return ParamsReady({refs_.wte, refs_.wpe});  // wpe: GPT-2 only
}

absl::Status GptModel::ChunkBackward(int chunk, int mb) {
  LOOM_ASSIGN_OR_RETURN(Slot * slot, FindSlot(chunk, mb, "backward"));
  if (slot->input_grad_done) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backward of micro-batch ", mb, " on chunk ", chunk,
        ": its input-gradient half (B) already ran; finish it with ChunkBackwardWeight"));
  }
  LOOM_RETURN_IF_ERROR(BackwardBody(chunk, *slot));
  slot->mb = -1;
  return absl::OkStatus();
}

absl::Status GptModel::BackwardBody(int chunk, Slot& slot) {
  // Block-diagonal attention (packed fine-tuning data) needs this micro-batch's segment ids.
  LOOM_RETURN_IF_ERROR(SelectSegments(slot.mb));
  LOOM_RETURN_IF_ERROR(SelectPositions(slot.mb));  // RoPE's inverse, the position gradient
  const GptStage::Chunk& ch = stage_.chunks[chunk];
  const bool full = recompute_ == Recompute::kFull;
  LOOM_RETURN_IF_ERROR(d_res_.CopyFrom(slot.d_out));
  for (int j = ch.layers - 1; j >= 0; --j) {
    const int l = ch.first_layer + j;
    if (full) {
      // Rebuild this layer's activations from its kept input (its collectives run again; they
      // give the same values), then its backward.
      const Tensor& x_in = j == 0 ? slot.x_in : slot.layer_out[j - 1];
      LayerActs& a = shared_acts_[0];
      a.res3 = slot.layer_out[j];
      LOOM_RETURN_IF_ERROR(LayerForward(l, x_in, a));
      LOOM_RETURN_IF_ERROR(LayerBackward(l, x_in, a));
    } else {
      const Tensor& x_in = j == 0 ? slot.x_in : slot.acts[j - 1].res3;
      LOOM_RETURN_IF_ERROR(LayerBackward(l, x_in, slot.acts[j]));
    }
  }
  // The chunk's input (the embedding's output) has served layer 0's backward: it keeps the
  // embedding's output gradient until W.
  if (ChunkHasEmbedding(chunk)) LOOM_RETURN_IF_ERROR(EmbeddingBackward(slot.tokens, &slot.x_in));
  return absl::OkStatus();
}

#undef LOOM_FULL_ROWS

absl::StatusOr<float> GptModel::ForwardBackward(const Tensor& tokens, const Tensor& targets,
                                                float loss_weight, bool backward) {
  if (tokens.rank() != 2 || targets.shape() != tokens.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("tokens and targets must both be [B, T], got ",
                                                   tokens.shape().ToString(), " and ",
                                                   targets.shape().ToString()));
  }
  if (num_chunks() != 1 || !stage_.embedding || !stage_.head) {
    return absl::FailedPreconditionError(
        "ForwardBackward runs a whole model; a pipeline stage runs its chunks one by one");
  }
  LOOM_RETURN_IF_ERROR(SetShape(tokens.dim(0), tokens.dim(1)));
  LOOM_ASSIGN_OR_RETURN(float loss, ChunkForward(0, 0, &tokens, &targets, loss_weight,
                                                 backward ? HeadMode::kTrain : HeadMode::kEval));
  if (backward) LOOM_RETURN_IF_ERROR(ChunkBackward(0, 0));
  return loss;
}

absl::StatusOr<Tensor> GptModel::Forward(const Tensor& tokens) {
  if (tokens.rank() != 2) {
    return absl::InvalidArgumentError("tokens must be [B, T], got " + tokens.shape().ToString());
  }
  if (num_chunks() != 1 || !stage_.embedding || !stage_.head) {
    return absl::FailedPreconditionError(
        "Forward runs a whole model; a pipeline stage runs its chunks one by one");
  }
  LOOM_RETURN_IF_ERROR(SetShape(tokens.dim(0), tokens.dim(1)));
  LOOM_RETURN_IF_ERROR(ChunkForward(0, 0, &tokens, nullptr, 1.0f, HeadMode::kLogits).status());
  return logits_;
}

}  // namespace loom
