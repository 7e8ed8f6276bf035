#include "model/gpt.h"

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

// Runs one op, charging its time to `family` when the profiler is on (loom bench step).
#define LOOM_TIMED_OP(family, expr)                      \
  do {                                                   \
    ::loom::OpProfiler::Scope loom_op_scope_(family, device_); \
    LOOM_RETURN_IF_ERROR(expr);                          \
  } while (0)

namespace loom {

GptModel::GptModel(const GptConfig& config, Device* device)
    : config_(config), layout_(ParamLayout::ForGpt(config)), device_(device) {}

absl::StatusOr<std::unique_ptr<GptModel>> GptModel::Create(const GptConfig& config,
                                                           Device* device, DType dtype) {
  LOOM_RETURN_IF_ERROR(config.Validate());
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("model compute dtype must be f32 or bf16, got ",
                                                   std::string(DTypeName(dtype))));
  }
  std::unique_ptr<GptModel> m(new GptModel(config, device));
  m->dtype_ = dtype;
  LOOM_ASSIGN_OR_RETURN(m->params_, Tensor::Zeros(Shape{m->layout_.total()}, m->dtype_, device));
  LOOM_ASSIGN_OR_RETURN(m->grads_, Tensor::Zeros(Shape{m->layout_.total()}, m->dtype_, device));
  return m;
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

// Names are fixed by ParamLayout::ForGpt, so a failed lookup is a programming error.
Tensor GptModel::P(const std::string& name) const { return Param(**layout_.Find(name)); }
Tensor GptModel::G(const std::string& name) const { return Grad(**layout_.Find(name)); }

absl::Status GptModel::ZeroGrads() { return grads_.Fill0(); }

absl::StatusOr<Tensor> GptModel::Scratch(const Shape& shape, DType dtype) {
  return Tensor::Empty(shape, dtype, device_);
}

absl::Status GptModel::EnsureActivations(int64_t B, int64_t T) {
  if (B == B_ && T == T_) return absl::OkStatus();
  if (T > config_.max_seq) {
    return absl::InvalidArgumentError(absl::StrCat("sequence length ", T,
                                                   " exceeds model.max_seq ", config_.max_seq));
  }
  const int64_t N = B * T, C = config_.hidden, F = config_.ffn_hidden;
  const int64_t fc_width = config_.is_llama() ? 2 * F : F;
  const DType dt = dtype_, f32 = DType::kF32;
  acts_.clear();
  acts_.resize(config_.layers);
  LOOM_ASSIGN_OR_RETURN(tokens_dev_, Scratch(Shape{B, T}, DType::kI32));
  LOOM_ASSIGN_OR_RETURN(targets_dev_, Scratch(Shape{N}, DType::kI32));
  LOOM_ASSIGN_OR_RETURN(emb_, Scratch(Shape{N, C}, dt));
  for (LayerActs& a : acts_) {
    LOOM_ASSIGN_OR_RETURN(a.norm1, Scratch(Shape{N, C}, dt));
    LOOM_ASSIGN_OR_RETURN(a.mean1, Scratch(Shape{N}, f32));
    LOOM_ASSIGN_OR_RETURN(a.rstd1, Scratch(Shape{N}, f32));
    LOOM_ASSIGN_OR_RETURN(a.qkv, Scratch(Shape{N, config_.qkv_dim()}, dt));
    LOOM_ASSIGN_OR_RETURN(a.atty, Scratch(Shape{N, C}, dt));
    LOOM_ASSIGN_OR_RETURN(a.lse, Scratch(Shape{B, config_.heads, T}, f32));
    LOOM_ASSIGN_OR_RETURN(a.res2, Scratch(Shape{N, C}, dt));
    LOOM_ASSIGN_OR_RETURN(a.norm2, Scratch(Shape{N, C}, dt));
    LOOM_ASSIGN_OR_RETURN(a.mean2, Scratch(Shape{N}, f32));
    LOOM_ASSIGN_OR_RETURN(a.rstd2, Scratch(Shape{N}, f32));
    LOOM_ASSIGN_OR_RETURN(a.fc, Scratch(Shape{N, fc_width}, dt));
    LOOM_ASSIGN_OR_RETURN(a.act, Scratch(Shape{N, F}, dt));
    LOOM_ASSIGN_OR_RETURN(a.res3, Scratch(Shape{N, C}, dt));
  }
  LOOM_ASSIGN_OR_RETURN(proj_, Scratch(Shape{N, C}, dt));
  LOOM_ASSIGN_OR_RETURN(normf_, Scratch(Shape{N, C}, dt));
  LOOM_ASSIGN_OR_RETURN(meanf_, Scratch(Shape{N}, f32));
  LOOM_ASSIGN_OR_RETURN(rstdf_, Scratch(Shape{N}, f32));
  LOOM_ASSIGN_OR_RETURN(logits_, Scratch(Shape{N, config_.padded_vocab}, dt));
  LOOM_ASSIGN_OR_RETURN(losses_, Scratch(Shape{N}, f32));
  LOOM_ASSIGN_OR_RETURN(d_res_, Scratch(Shape{N, C}, dt));
  LOOM_ASSIGN_OR_RETURN(d_tmp_, Scratch(Shape{N, C}, dt));
  LOOM_ASSIGN_OR_RETURN(d_norm_, Scratch(Shape{N, C}, dt));
  LOOM_ASSIGN_OR_RETURN(d_qkv_, Scratch(Shape{N, config_.qkv_dim()}, dt));
  LOOM_ASSIGN_OR_RETURN(d_atty_, Scratch(Shape{N, C}, dt));
  LOOM_ASSIGN_OR_RETURN(d_fc_, Scratch(Shape{N, fc_width}, dt));
  LOOM_ASSIGN_OR_RETURN(d_act_, Scratch(Shape{N, F}, dt));
  B_ = B;
  T_ = T;
  return absl::OkStatus();
}

absl::Status GptModel::RunForward(const Tensor& tokens) {
  const GptConfig& c = config_;
  const bool llama = c.is_llama();
  const float eps = c.norm_eps;
  const int64_t B = B_, T = T_;
  Tensor wpe;
  if (!llama) wpe = P("wpe.weight");
  LOOM_ASSIGN_OR_RETURN(Tensor emb3, emb_.Reshape(Shape{B, T, c.hidden}));
  LOOM_TIMED_OP("embedding", ops::EmbeddingForward(tokens, P("wte.weight"), llama ? nullptr : &wpe, emb3));
  Tensor x = emb_;
  for (int l = 0; l < c.layers; ++l) {
    LayerActs& a = acts_[l];
    const std::string p = absl::StrCat("blocks.", l, ".");
    if (llama) {
      LOOM_TIMED_OP("norm", ops::RMSNormForward(x, P(p + "attn_norm.weight"), eps, a.norm1, a.rstd1));
      LOOM_TIMED_OP("linear", ops::LinearForward(a.norm1, P(p + "attn.qkv.weight"), nullptr, a.qkv));
    } else {
      LOOM_TIMED_OP("norm", ops::LayerNormForward(x, P(p + "ln1.weight"), P(p + "ln1.bias"), eps,
                                                 a.norm1, a.mean1, a.rstd1));
      Tensor qkv_b = P(p + "attn.qkv.bias");
      LOOM_TIMED_OP("linear", ops::LinearForward(a.norm1, P(p + "attn.qkv.weight"), &qkv_b, a.qkv));
    }
    LOOM_ASSIGN_OR_RETURN(Tensor qkv3, a.qkv.Reshape(Shape{B, T, c.qkv_dim()}));
    LOOM_ASSIGN_OR_RETURN(Tensor atty3, a.atty.Reshape(Shape{B, T, c.hidden}));
    if (llama) LOOM_TIMED_OP("rope", ops::RopeForward(qkv3, c.heads, c.kv_heads, c.rope_theta));
    LOOM_TIMED_OP("attention", ops::AttentionForward(qkv3, c.heads, c.kv_heads, atty3, a.lse));
    if (llama) {
      LOOM_TIMED_OP("linear", ops::LinearForward(a.atty, P(p + "attn.proj.weight"), nullptr, proj_));
      LOOM_TIMED_OP("norm", ops::FusedResidualRMSNormForward(x, proj_, P(p + "mlp_norm.weight"), eps,
                                                            a.res2, a.norm2, a.rstd2));
      LOOM_TIMED_OP("linear", ops::LinearForward(a.norm2, P(p + "mlp.gate_up.weight"), nullptr, a.fc));
      LOOM_TIMED_OP("activation", ops::SwiGLUForward(a.fc, a.act));
      LOOM_TIMED_OP("linear", ops::LinearForward(a.act, P(p + "mlp.down.weight"), nullptr, proj_));
    } else {
      Tensor proj_b = P(p + "attn.proj.bias");
      LOOM_TIMED_OP("linear", ops::LinearForward(a.atty, P(p + "attn.proj.weight"), &proj_b, proj_));
      LOOM_TIMED_OP("norm", ops::FusedResidualLayerNormForward(
          x, proj_, P(p + "ln2.weight"), P(p + "ln2.bias"), eps, a.res2, a.norm2, a.mean2, a.rstd2));
      Tensor fc_b = P(p + "mlp.fc.bias");
      LOOM_TIMED_OP("linear", ops::LinearForward(a.norm2, P(p + "mlp.fc.weight"), &fc_b, a.act, &a.fc));
      Tensor mproj_b = P(p + "mlp.proj.bias");
      LOOM_TIMED_OP("linear", ops::LinearForward(a.act, P(p + "mlp.proj.weight"), &mproj_b, proj_));
    }
    LOOM_TIMED_OP("residual", ops::Add(a.res2, proj_, a.res3));
    x = a.res3;
  }
  if (llama) {
    LOOM_TIMED_OP("norm", ops::RMSNormForward(x, P("final_norm.weight"), eps, normf_, rstdf_));
  } else {
    LOOM_TIMED_OP("norm", ops::LayerNormForward(x, P("ln_f.weight"), P("ln_f.bias"), eps, normf_, meanf_, rstdf_));
  }
  const Tensor head = c.tied_embeddings ? P("wte.weight") : P("lm_head.weight");
  LOOM_TIMED_OP("linear", ops::LinearForward(normf_, head, nullptr, logits_));
  return absl::OkStatus();
}

absl::Status GptModel::RunBackward(const Tensor& tokens) {
  const GptConfig& c = config_;
  const bool llama = c.is_llama();
  const int64_t B = B_, T = T_;
  const std::string head_name = c.tied_embeddings ? "wte.weight" : "lm_head.weight";
  // logits_ now holds dlogits (the fused cross-entropy wrote them in place).
  LOOM_TIMED_OP("linear", ops::LinearBackward(logits_, normf_, P(head_name), &d_norm_, G(head_name),
                                           nullptr));
  const Tensor& x_last = c.layers > 0 ? acts_.back().res3 : emb_;
  if (llama) {
    LOOM_TIMED_OP("norm", ops::RMSNormBackward(d_norm_, x_last, P("final_norm.weight"), rstdf_,
                                              d_res_, G("final_norm.weight")));
  } else {
    LOOM_TIMED_OP("norm", ops::LayerNormBackward(d_norm_, x_last, P("ln_f.weight"), meanf_, rstdf_,
                                                d_res_, G("ln_f.weight"), G("ln_f.bias")));
  }
  for (int l = c.layers - 1; l >= 0; --l) {
    LayerActs& a = acts_[l];
    const Tensor& x_in = l == 0 ? emb_ : acts_[l - 1].res3;
    const std::string p = absl::StrCat("blocks.", l, ".");
    // d_res_ holds dL/d(block output); the MLP branch first.
    if (llama) {
      LOOM_TIMED_OP("linear", ops::LinearBackward(d_res_, a.act, P(p + "mlp.down.weight"), &d_act_,
                                               G(p + "mlp.down.weight"), nullptr));
      LOOM_TIMED_OP("activation", ops::SwiGLUBackward(d_act_, a.fc, d_fc_));
      LOOM_TIMED_OP("linear", ops::LinearBackward(d_fc_, a.norm2, P(p + "mlp.gate_up.weight"),
                                               &d_norm_, G(p + "mlp.gate_up.weight"), nullptr));
      LOOM_TIMED_OP("norm", ops::RMSNormBackward(d_norm_, a.res2, P(p + "mlp_norm.weight"), a.rstd2,
                                                d_tmp_, G(p + "mlp_norm.weight")));
    } else {
      Tensor g_mproj_b = G(p + "mlp.proj.bias");
      LOOM_TIMED_OP("linear", ops::LinearBackward(d_res_, a.act, P(p + "mlp.proj.weight"), &d_act_,
                                               G(p + "mlp.proj.weight"), &g_mproj_b));
      LOOM_TIMED_OP("activation", ops::GeluBackward(d_act_, a.fc, d_fc_));
      Tensor g_fc_b = G(p + "mlp.fc.bias");
      LOOM_TIMED_OP("linear", ops::LinearBackward(d_fc_, a.norm2, P(p + "mlp.fc.weight"), &d_norm_,
                                               G(p + "mlp.fc.weight"), &g_fc_b));
      LOOM_TIMED_OP("norm", ops::LayerNormBackward(d_norm_, a.res2, P(p + "ln2.weight"), a.mean2,
                                                  a.rstd2, d_tmp_, G(p + "ln2.weight"),
                                                  G(p + "ln2.bias")));
    }
    LOOM_TIMED_OP("residual", ops::Add(d_res_, d_tmp_, d_res_));  // now dL/d res2
    // Attention branch.
    Tensor g_proj_b;
    if (!llama) g_proj_b = G(p + "attn.proj.bias");
    LOOM_TIMED_OP("linear", ops::LinearBackward(d_res_, a.atty, P(p + "attn.proj.weight"), &d_atty_,
                                             G(p + "attn.proj.weight"), llama ? nullptr : &g_proj_b));
    LOOM_ASSIGN_OR_RETURN(Tensor qkv3, a.qkv.Reshape(Shape{B, T, c.qkv_dim()}));
    LOOM_ASSIGN_OR_RETURN(Tensor atty3, a.atty.Reshape(Shape{B, T, c.hidden}));
    LOOM_ASSIGN_OR_RETURN(Tensor datty3, d_atty_.Reshape(Shape{B, T, c.hidden}));
    LOOM_ASSIGN_OR_RETURN(Tensor dqkv3, d_qkv_.Reshape(Shape{B, T, c.qkv_dim()}));
    LOOM_TIMED_OP("attention", ops::AttentionBackward(datty3, qkv3, atty3, a.lse, c.heads, c.kv_heads, dqkv3));
    if (llama) {
      LOOM_TIMED_OP("rope", ops::RopeBackward(dqkv3, c.heads, c.kv_heads, c.rope_theta));
      LOOM_TIMED_OP("linear", ops::LinearBackward(d_qkv_, a.norm1, P(p + "attn.qkv.weight"), &d_norm_,
                                               G(p + "attn.qkv.weight"), nullptr));
      LOOM_TIMED_OP("norm", ops::RMSNormBackward(d_norm_, x_in, P(p + "attn_norm.weight"), a.rstd1,
                                                d_tmp_, G(p + "attn_norm.weight")));
    } else {
      Tensor g_qkv_b = G(p + "attn.qkv.bias");
      LOOM_TIMED_OP("linear", ops::LinearBackward(d_qkv_, a.norm1, P(p + "attn.qkv.weight"), &d_norm_,
                                               G(p + "attn.qkv.weight"), &g_qkv_b));
      LOOM_TIMED_OP("norm", ops::LayerNormBackward(d_norm_, x_in, P(p + "ln1.weight"), a.mean1,
                                                  a.rstd1, d_tmp_, G(p + "ln1.weight"),
                                                  G(p + "ln1.bias")));
    }
    LOOM_TIMED_OP("residual", ops::Add(d_res_, d_tmp_, d_res_));  // now dL/d x_in
  }
  Tensor g_wpe;
  if (!llama) g_wpe = G("wpe.weight");
  LOOM_ASSIGN_OR_RETURN(Tensor dres3, d_res_.Reshape(Shape{B, T, c.hidden}));
  LOOM_TIMED_OP("embedding", ops::EmbeddingBackward(tokens, dres3, G("wte.weight"), llama ? nullptr : &g_wpe));
  return absl::OkStatus();
}

absl::StatusOr<float> GptModel::ForwardBackward(const Tensor& tokens, const Tensor& targets,
                                                float loss_weight, bool backward) {
  if (tokens.rank() != 2 || targets.shape() != tokens.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("tokens and targets must both be [B, T], got ",
                                                   tokens.shape().ToString(), " and ",
                                                   targets.shape().ToString()));
  }
  LOOM_RETURN_IF_ERROR(EnsureActivations(tokens.dim(0), tokens.dim(1)));
  LOOM_RETURN_IF_ERROR(tokens_dev_.CopyFrom(tokens));
  LOOM_RETURN_IF_ERROR(targets_dev_.CopyFrom(targets));
  LOOM_RETURN_IF_ERROR(RunForward(tokens_dev_));
  const int64_t N = B_ * T_;
  LOOM_TIMED_OP("cross_entropy", ops::CrossEntropyForwardBackward(logits_, targets_dev_, losses_,
                                                        backward ? &logits_ : nullptr,
                                                        loss_weight / static_cast<float>(N),
                                                        config_.vocab));
  LOOM_ASSIGN_OR_RETURN(std::vector<float> losses, losses_.ToFloatVector());
  double sum = 0.0;
  for (float v : losses) sum += v;
  if (backward) LOOM_RETURN_IF_ERROR(RunBackward(tokens_dev_));
  return static_cast<float>(sum / static_cast<double>(N));
}

absl::StatusOr<Tensor> GptModel::Forward(const Tensor& tokens) {
  if (tokens.rank() != 2) {
    return absl::InvalidArgumentError("tokens must be [B, T], got " + tokens.shape().ToString());
  }
  LOOM_RETURN_IF_ERROR(EnsureActivations(tokens.dim(0), tokens.dim(1)));
  LOOM_RETURN_IF_ERROR(tokens_dev_.CopyFrom(tokens));
  LOOM_RETURN_IF_ERROR(RunForward(tokens_dev_));
  return logits_;
}

}  // namespace loom
