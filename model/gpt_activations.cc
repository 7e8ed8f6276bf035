// GptModel's activation memory: the buffers a micro-batch shape needs (SetShape), the
// per-micro-batch slots a chunk keeps from forward to backward (TakeSlot, FindSlot), and
// MeasureActivations, the same allocation code run dry for the memory estimate.
#include <memory>

#include "absl/strings/str_cat.h"
#include "model/gpt.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<GptModel::ActivationFootprint> GptModel::MeasureActivations(
    const GptConfig& config, int tp, bool sequence_parallel, GptStage stage, DType dtype,
    Recompute recompute, int64_t B, int64_t T, int cp, bool split_backward) {
  LOOM_RETURN_IF_ERROR(config.Validate());
  LOOM_ASSIGN_OR_RETURN(stage, ResolveGptStage(config, stage));
  if (tp < 1) return absl::InvalidArgumentError(absl::StrCat("tp must be >= 1, got ", tp));
  if (cp < 1) return absl::InvalidArgumentError(absl::StrCat("cp must be >= 1, got ", cp));
  std::unique_ptr<GptModel> m(new GptModel(config, nullptr, ParamTable()));
  m->dry_run_ = true;
  m->stage_ = std::move(stage);
  m->recompute_ = recompute;
  m->dtype_ = dtype;
  m->tp_size_ = tp;
  m->sp_ = sequence_parallel && tp > 1;
  m->cp_size_ = cp;  // T is then this rank's tokens of each sequence
  m->heads_ = config.heads / tp;
  m->kv_heads_ = config.kv_heads / tp;
  m->local_vocab_ = config.padded_vocab / tp;
  m->split_backward_ = split_backward;
  LOOM_RETURN_IF_ERROR(m->SetShape(B, T));
  ActivationFootprint out;
  out.scratch = m->scratch_bytes_;
  for (int c = 0; c < m->num_chunks(); ++c) {
    const int64_t before = m->slot_bytes_;
    LOOM_RETURN_IF_ERROR(m->TakeSlot(c, 0).status());
    out.slot.push_back(m->slot_bytes_ - before);
  }
  return out;
}

absl::StatusOr<Tensor> GptModel::Alloc(const Shape& shape, DType dtype, int64_t* bytes) {
  if (dry_run_) {
    *bytes += shape.numel() * static_cast<int64_t>(DTypeSize(dtype));
    return Tensor();
  }
  LOOM_ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(shape, dtype, device_));
  *bytes += static_cast<int64_t>(t.nbytes());
  return t;
}

int GptModel::slots_allocated() const {
  int n = 0;
  for (const auto& chunk : slots_) n += static_cast<int>(chunk.size());
  return n;
}

absl::Status GptModel::SetShape(int64_t B, int64_t T) {
  if (B == B_ && T == T_) return absl::OkStatus();
  if (B <= 0 || T <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("micro-batch shape must be positive, got B = ", B, ", T = ", T));
  }
  if (T * cp_size_ > config_.max_seq) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence length ", T * cp_size_, " exceeds model.max_seq ", config_.max_seq));
  }
  if (cp_size_ > 1 && T % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "context parallelism: a rank's ", T, " tokens per sequence must be two equal chunks"));
  }
  const int64_t N = B * T, C = config_.hidden, hd = config_.head_dim();
  if (sp_ && N % tp_size_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat("sequence parallelism splits the ", N,
                                                   " rows of a micro-batch (micro_batch_size x "
                                                   "seq_len) over tp = ",
                                                   tp_size_, ", which does not divide them"));
  }
  const int64_t Ns = sp_ ? N / tp_size_ : N;
  const int64_t F = config_.ffn_hidden / tp_size_;
  const int64_t fc_width = config_.is_llama() ? 2 * F : F;
  const int64_t qkv = (heads_ + 2 * kv_heads_) * hd, attn = heads_ * hd;
  const DType dt = dtype_, f32 = DType::kF32;
  // Drop the old shape's slots and scratch before allocating the new.
  slots_.assign(stage_.chunks.size(), {});
  shared_acts_.clear();
  slot_bytes_ = scratch_bytes_ = 0;
  B_ = B;
  T_ = T;
  Ns_ = Ns;
  int64_t* sb = &scratch_bytes_;
  LOOM_ASSIGN_OR_RETURN(targets_dev_, Alloc(Shape{N}, DType::kI32, sb));
  if (recompute_ == Recompute::kFull) {
    // One layer's activations, rebuilt layer by layer in backward (each layer's output is the
    // slot's checkpoint, so res3 here is only a placeholder the layer loop repoints).
    shared_acts_.resize(1);
    LOOM_RETURN_IF_ERROR(AllocLayerActs(shared_acts_[0], true, sb));
  }
  if (recompute_ == Recompute::kSelective) {
    LOOM_ASSIGN_OR_RETURN(act_scratch_, Alloc(Shape{N, F}, dt, sb));
  }
  LOOM_ASSIGN_OR_RETURN(proj_, Alloc(Shape{N, C}, dt, sb));
  proj_s_ = proj_;
  if (sp_) {
    LOOM_ASSIGN_OR_RETURN(proj_s_, Alloc(Shape{Ns, C}, dt, sb));
    LOOM_ASSIGN_OR_RETURN(gathered_, Alloc(Shape{N, C}, dt, sb));
  }
  if (stage_.head) {
    LOOM_ASSIGN_OR_RETURN(normf_, Alloc(Shape{Ns, C}, dt, sb));
    LOOM_ASSIGN_OR_RETURN(meanf_, Alloc(Shape{Ns}, f32, sb));
    LOOM_ASSIGN_OR_RETURN(rstdf_, Alloc(Shape{Ns}, f32, sb));
    LOOM_ASSIGN_OR_RETURN(logits_, Alloc(Shape{N, local_vocab_}, dt, sb));
    LOOM_ASSIGN_OR_RETURN(losses_, Alloc(Shape{N}, f32, sb));
    if (tp_size_ > 1) {
      LOOM_ASSIGN_OR_RETURN(row_max_, Alloc(Shape{N}, f32, sb));
      LOOM_ASSIGN_OR_RETURN(sum_exp_, Alloc(Shape{N}, f32, sb));
      LOOM_ASSIGN_OR_RETURN(target_logit_, Alloc(Shape{N}, f32, sb));
    }
  }
  LOOM_ASSIGN_OR_RETURN(d_res_, Alloc(Shape{Ns, C}, dt, sb));
  LOOM_ASSIGN_OR_RETURN(d_tmp_, Alloc(Shape{Ns, C}, dt, sb));
  LOOM_ASSIGN_OR_RETURN(d_norm_, Alloc(Shape{N, C}, dt, sb));
  d_full_ = d_res_;
  d_norm_s_ = d_norm_;
  if (sp_) {
    LOOM_ASSIGN_OR_RETURN(d_full_, Alloc(Shape{N, C}, dt, sb));
    LOOM_ASSIGN_OR_RETURN(d_norm_s_, Alloc(Shape{Ns, C}, dt, sb));
  }
  LOOM_ASSIGN_OR_RETURN(d_qkv_, Alloc(Shape{N, qkv}, dt, sb));
  LOOM_ASSIGN_OR_RETURN(d_atty_, Alloc(Shape{N, attn}, dt, sb));
  LOOM_ASSIGN_OR_RETURN(d_fc_, Alloc(Shape{N, fc_width}, dt, sb));
  LOOM_ASSIGN_OR_RETURN(d_act_, Alloc(Shape{N, F}, dt, sb));
  if (cp_size_ > 1) {
    // Ring attention (whole qkv rows): two K/V blocks in flight, two dK/dV accumulators in
    // flight and this rank's partial.
    for (Tensor& t : ring_kv_) {
      LOOM_ASSIGN_OR_RETURN(t, Alloc(Shape{B, T, qkv}, dt, sb));
    }
    for (Tensor& t : ring_dkv_) {
      LOOM_ASSIGN_OR_RETURN(t, Alloc(Shape{B, T, qkv}, dt, sb));
    }
    // This rank's global positions, per token (the embedding's and RoPE's default).
    LOOM_ASSIGN_OR_RETURN(cp_positions_, Alloc(Shape{B, T}, DType::kI32, sb));
    if (!dry_run_) LOOM_RETURN_IF_ERROR(FillContextPositions());
  }
  return absl::OkStatus();
}

absl::Status GptModel::AllocLayerActs(LayerActs& a, bool keep_act, int64_t* bytes) {
  const int64_t B = B_, T = T_, N = B * T, Ns = Ns_, C = config_.hidden, hd = config_.head_dim();
  const int64_t F = config_.ffn_hidden / tp_size_;
  const int64_t fc_width = config_.is_llama() ? 2 * F : F;
  const int64_t qkv = (heads_ + 2 * kv_heads_) * hd, attn = heads_ * hd;
  const DType dt = dtype_, f32 = DType::kF32;
  LOOM_ASSIGN_OR_RETURN(a.norm1, Alloc(Shape{Ns, C}, dt, bytes));
  if (!config_.is_llama()) {
    LOOM_ASSIGN_OR_RETURN(a.mean1, Alloc(Shape{Ns}, f32, bytes));
  }
  LOOM_ASSIGN_OR_RETURN(a.rstd1, Alloc(Shape{Ns}, f32, bytes));
  LOOM_ASSIGN_OR_RETURN(a.qkv, Alloc(Shape{N, qkv}, dt, bytes));
  LOOM_ASSIGN_OR_RETURN(a.atty, Alloc(Shape{N, attn}, dt, bytes));
  LOOM_ASSIGN_OR_RETURN(a.lse, Alloc(Shape{B, heads_, T}, f32, bytes));
  LOOM_ASSIGN_OR_RETURN(a.res2, Alloc(Shape{Ns, C}, dt, bytes));
  LOOM_ASSIGN_OR_RETURN(a.norm2, Alloc(Shape{Ns, C}, dt, bytes));
  if (!config_.is_llama()) {
    LOOM_ASSIGN_OR_RETURN(a.mean2, Alloc(Shape{Ns}, f32, bytes));
  }
  LOOM_ASSIGN_OR_RETURN(a.rstd2, Alloc(Shape{Ns}, f32, bytes));
  LOOM_ASSIGN_OR_RETURN(a.fc, Alloc(Shape{N, fc_width}, dt, bytes));
  if (keep_act) {
    LOOM_ASSIGN_OR_RETURN(a.act, Alloc(Shape{N, F}, dt, bytes));
  } else {
    a.act = act_scratch_;  // selective recompute: rebuilt from fc in backward
  }
  LOOM_ASSIGN_OR_RETURN(a.res3, Alloc(Shape{Ns, C}, dt, bytes));
  return absl::OkStatus();
}

absl::StatusOr<GptModel::Slot*> GptModel::TakeSlot(int chunk, int mb) {
  if (B_ == 0) return absl::FailedPreconditionError("GptModel: SetShape before the chunk calls");
  if (chunk < 0 || chunk >= num_chunks()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", chunk, " out of range [0, ", num_chunks(), ")"));
  }
  std::vector<Slot>& slots = slots_[chunk];
  Slot* free = nullptr;
  for (Slot& s : slots) {
    if (s.mb == mb) return &s;  // already taken (its input was received)
    if (s.mb < 0 && free == nullptr) free = &s;
  }
  if (free == nullptr) {
    // A new slot: the activations of one more micro-batch in flight.
    slots.emplace_back();
    free = &slots.back();
    int64_t* b = &slot_bytes_;
    const int64_t C = config_.hidden;
    LOOM_ASSIGN_OR_RETURN(free->x_in, Alloc(Shape{Ns_, C}, dtype_, b));
    LOOM_ASSIGN_OR_RETURN(free->d_out, Alloc(Shape{Ns_, C}, dtype_, b));
    if (ChunkHasEmbedding(chunk)) {
      LOOM_ASSIGN_OR_RETURN(free->tokens, Alloc(Shape{B_, T_}, DType::kI32, b));
    }
    if (recompute_ == Recompute::kFull) {
      free->layer_out.resize(stage_.chunks[chunk].layers);
      for (Tensor& t : free->layer_out) {
        LOOM_ASSIGN_OR_RETURN(t, Alloc(Shape{Ns_, C}, dtype_, b));
      }
    } else {
      free->acts.resize(stage_.chunks[chunk].layers);
      for (LayerActs& a : free->acts) {
        LOOM_RETURN_IF_ERROR(AllocLayerActs(a, recompute_ == Recompute::kNone, b));
      }
    }
    if (split_backward_) {
      // What W reads that B's shared buffers would not keep (gpt_backward_split.cc).
      for (const auto& [shape, dtype] : WeightStashPlan(chunk)) {
        LOOM_ASSIGN_OR_RETURN(Tensor t, Alloc(shape, dtype, b));
        free->stash.push_back(t);
      }
    }
  }
  free->mb = mb;
  return free;
}

absl::StatusOr<GptModel::Slot*> GptModel::FindSlot(int chunk, int mb, const char* what) {
  if (chunk >= 0 && chunk < num_chunks()) {
    for (Slot& s : slots_[chunk]) {
      if (s.mb == mb) return &s;
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat(what, " of micro-batch ", mb, " on chunk ", chunk,
                   ": that micro-batch is not in flight there (no forward ran for it)"));
}

absl::StatusOr<Tensor> GptModel::ChunkInput(int chunk, int mb) {
  if (ChunkHasEmbedding(chunk)) {
    return absl::FailedPreconditionError(
        "the embedding chunk's input is tokens, not an activation");
  }
  LOOM_ASSIGN_OR_RETURN(Slot * s, TakeSlot(chunk, mb));
  return s->x_in;
}

absl::StatusOr<Tensor> GptModel::ChunkOutputGrad(int chunk, int mb) {
  LOOM_ASSIGN_OR_RETURN(Slot * s, FindSlot(chunk, mb, "the output gradient"));
  return s->d_out;
}

}  // namespace loom
