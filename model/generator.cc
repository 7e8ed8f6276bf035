#include "model/generator.h"

#include "absl/strings/str_cat.h"
#include "ops/activation.h"
#include "ops/decode_attention.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<std::unique_ptr<Generator>> Generator::Create(GptModel* model, Communicator* tp,
                                                             int64_t max_len) {
  const GptConfig& c = model->config();
  if (model->num_chunks() != 1 || !model->stage().embedding || !model->stage().head ||
      model->stage().chunks[0].layers != c.layers) {
    return absl::InvalidArgumentError(
        "generation needs the whole model on each rank of its tensor group (one pipeline stage)");
  }
  const int tp_size = tp != nullptr ? tp->size() : 1;
  if (tp_size != model->tp_size()) {
    return absl::InvalidArgumentError(absl::StrCat("generation: the model was built for tp ",
                                                   model->tp_size(), ", the group has ", tp_size,
                                                   " ranks"));
  }
  if (max_len < 1 || max_len > c.max_seq) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generation: a sequence of ", max_len, " tokens does not fit model.max_seq = ", c.max_seq));
  }
  std::unique_ptr<Generator> g(new Generator());
  g->model_ = model;
  g->tp_ = tp_size > 1 ? tp : nullptr;
  g->max_len_ = max_len;
  g->heads_ = c.heads / tp_size;
  g->kv_heads_ = c.kv_heads / tp_size;
  g->hd_ = c.hidden / c.heads;
  g->qkv_width_ = static_cast<int64_t>(g->heads_ + 2 * g->kv_heads_) * g->hd_;
  g->vocab_start_ = static_cast<int64_t>(model->tp_rank()) * (c.padded_vocab / tp_size);
  Device* dev = model->device();
  const DType dt = model->dtype();
  const int64_t C = c.hidden, L = max_len;
  const int64_t ffn_local = c.ffn_hidden / tp_size;
  const int64_t fc_width = c.is_llama() ? 2 * ffn_local : ffn_local;
  for (int l = 0; l < c.layers; ++l) {
    LOOM_ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(Shape{L, g->qkv_width_}, dt, dev));
    g->cache_.push_back(t);
  }
  LOOM_ASSIGN_OR_RETURN(g->x_, Tensor::Empty(Shape{L, C}, dt, dev));
  LOOM_ASSIGN_OR_RETURN(g->res2_, Tensor::Empty(Shape{L, C}, dt, dev));
  LOOM_ASSIGN_OR_RETURN(g->norm_, Tensor::Empty(Shape{L, C}, dt, dev));
  LOOM_ASSIGN_OR_RETURN(g->mean_, Tensor::Empty(Shape{L}, DType::kF32, dev));
  LOOM_ASSIGN_OR_RETURN(g->rstd_, Tensor::Empty(Shape{L}, DType::kF32, dev));
  LOOM_ASSIGN_OR_RETURN(g->atty_, Tensor::Empty(Shape{L, int64_t{g->heads_} * g->hd_}, dt, dev));
  LOOM_ASSIGN_OR_RETURN(g->proj_, Tensor::Empty(Shape{L, C}, dt, dev));
  LOOM_ASSIGN_OR_RETURN(g->fc_, Tensor::Empty(Shape{L, fc_width}, dt, dev));
  LOOM_ASSIGN_OR_RETURN(g->act_, Tensor::Empty(Shape{L, ffn_local}, dt, dev));
  LOOM_ASSIGN_OR_RETURN(g->tokens_, Tensor::Empty(Shape{L}, DType::kI32, dev));
  LOOM_ASSIGN_OR_RETURN(g->logits_, Tensor::Empty(Shape{1, c.padded_vocab / tp_size}, dt, dev));
  return g;
}

absl::Status Generator::AllReduce(const Tensor& t) {
  return tp_ != nullptr ? tp_->AllReduce(t, ReduceOp::kSum) : absl::OkStatus();
}

Tensor Generator::Rows(const Tensor& t, int64_t n) const { return t.Slice(0, n); }

absl::Status Generator::Layer(int l, int64_t n) {
  const GptConfig& c = model_->config();
  const bool llama = c.is_llama();
  const bool rank0 = model_->tp_rank() == 0;
  const std::string b = absl::StrCat("blocks.", l, ".");
  Tensor x = Rows(x_, n);
  Tensor norm = Rows(norm_, n);
  Tensor mean = Rows(mean_, n);
  Tensor rstd = Rows(rstd_, n);
  Tensor res2 = Rows(res2_, n);
  Tensor atty = Rows(atty_, n);
  Tensor proj = Rows(proj_, n);
  Tensor fc = Rows(fc_, n);
  Tensor act = Rows(act_, n);
  // The new tokens' qkv rows go straight into the cache.
  Tensor qkv = cache_[l].Slice(pos_, pos_ + n);
  LOOM_ASSIGN_OR_RETURN(Tensor qkv_w, P(b + "attn.qkv.weight"));
  LOOM_ASSIGN_OR_RETURN(Tensor proj_w, P(b + "attn.proj.weight"));
  if (llama) {
    LOOM_ASSIGN_OR_RETURN(Tensor n1, P(b + "attn_norm.weight"));
    LOOM_RETURN_IF_ERROR(ops::RMSNormForward(x, n1, c.norm_eps, norm, rstd));
    LOOM_RETURN_IF_ERROR(ops::LinearForward(norm, qkv_w, nullptr, qkv));
    LOOM_ASSIGN_OR_RETURN(Tensor qkv3, qkv.Reshape(Shape{1, n, qkv_width_}));
    LOOM_RETURN_IF_ERROR(ops::RopeForward(qkv3, heads_, kv_heads_, c.rope_theta, pos_));
  } else {
    LOOM_ASSIGN_OR_RETURN(Tensor n1w, P(b + "ln1.weight"));
    LOOM_ASSIGN_OR_RETURN(Tensor n1b, P(b + "ln1.bias"));
    LOOM_ASSIGN_OR_RETURN(Tensor qkv_b, P(b + "attn.qkv.bias"));
    LOOM_RETURN_IF_ERROR(ops::LayerNormForward(x, n1w, n1b, c.norm_eps, norm, mean, rstd));
    LOOM_RETURN_IF_ERROR(ops::LinearForward(norm, qkv_w, &qkv_b, qkv));
  }
  Tensor cached = cache_[l].Slice(0, pos_ + n);
  LOOM_RETURN_IF_ERROR(ops::DecodeAttention(cached, heads_, kv_heads_, pos_, n, atty));
  if (llama) {
    LOOM_RETURN_IF_ERROR(ops::LinearForward(atty, proj_w, nullptr, proj));
    LOOM_RETURN_IF_ERROR(AllReduce(proj));
    LOOM_ASSIGN_OR_RETURN(Tensor n2, P(b + "mlp_norm.weight"));
    LOOM_RETURN_IF_ERROR(
        ops::FusedResidualRMSNormForward(x, proj, n2, c.norm_eps, res2, norm, rstd));
    LOOM_ASSIGN_OR_RETURN(Tensor gate_up, P(b + "mlp.gate_up.weight"));
    LOOM_ASSIGN_OR_RETURN(Tensor down, P(b + "mlp.down.weight"));
    LOOM_RETURN_IF_ERROR(ops::LinearForward(norm, gate_up, nullptr, fc));
    LOOM_RETURN_IF_ERROR(ops::SwiGLUForward(fc, act));
    LOOM_RETURN_IF_ERROR(ops::LinearForward(act, down, nullptr, proj));
  } else {
    LOOM_ASSIGN_OR_RETURN(Tensor proj_b, P(b + "attn.proj.bias"));
    LOOM_RETURN_IF_ERROR(ops::LinearForward(atty, proj_w, rank0 ? &proj_b : nullptr, proj));
    LOOM_RETURN_IF_ERROR(AllReduce(proj));
    LOOM_ASSIGN_OR_RETURN(Tensor n2w, P(b + "ln2.weight"));
    LOOM_ASSIGN_OR_RETURN(Tensor n2b, P(b + "ln2.bias"));
    LOOM_RETURN_IF_ERROR(
        ops::FusedResidualLayerNormForward(x, proj, n2w, n2b, c.norm_eps, res2, norm, mean, rstd));
    LOOM_ASSIGN_OR_RETURN(Tensor fc_w, P(b + "mlp.fc.weight"));
    LOOM_ASSIGN_OR_RETURN(Tensor fc_b, P(b + "mlp.fc.bias"));
    LOOM_ASSIGN_OR_RETURN(Tensor out_w, P(b + "mlp.proj.weight"));
    LOOM_ASSIGN_OR_RETURN(Tensor out_b, P(b + "mlp.proj.bias"));
    LOOM_RETURN_IF_ERROR(ops::LinearForward(norm, fc_w, &fc_b, act, &fc));  // GeLU fused
    LOOM_RETURN_IF_ERROR(ops::LinearForward(act, out_w, rank0 ? &out_b : nullptr, proj));
  }
  LOOM_RETURN_IF_ERROR(AllReduce(proj));
  return ops::Add(res2, proj, x);
}

absl::StatusOr<Tensor> Generator::Append(absl::Span<const int32_t> tokens) {
  const GptConfig& c = model_->config();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("generation: no token to append");
  if (pos_ + n > max_len_) {
    return absl::OutOfRangeError(absl::StrCat("generation: ", pos_, " + ", n,
                                              " tokens exceed the sequence limit of ", max_len_,
                                              " (model.max_seq or --max-len)"));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generation: token id ", t, " is outside the vocabulary [0, ", c.vocab, ")"));
    }
  }
  LOOM_ASSIGN_OR_RETURN(Tensor tok, tokens_.FlatView(0, n).Reshape(Shape{1, n}));
  LOOM_RETURN_IF_ERROR(tok.CopyFrom(
      Tensor::View(const_cast<int32_t*>(tokens.data()), Shape{1, n}, DType::kI32, CpuDevice())));
  Tensor x = Rows(x_, n);
  LOOM_ASSIGN_OR_RETURN(Tensor x3, x.Reshape(Shape{1, n, c.hidden}));
  LOOM_ASSIGN_OR_RETURN(Tensor wte, P("wte.weight"));
  Tensor wpe;
  if (!c.is_llama()) {
    LOOM_ASSIGN_OR_RETURN(Tensor all, P("wpe.weight"));
    wpe = all.Slice(pos_, pos_ + n);  // out[t] adds wpe[t]
  }
  // Positions once, by tensor rank 0, before the reduction (as the model does).
  const Tensor* wpe_here = (!c.is_llama() && model_->tp_rank() == 0) ? &wpe : nullptr;
  LOOM_RETURN_IF_ERROR(ops::EmbeddingForward(tok, wte, wpe_here, x3, vocab_start_));
  LOOM_RETURN_IF_ERROR(AllReduce(x));
  for (int l = 0; l < c.layers; ++l) LOOM_RETURN_IF_ERROR(Layer(l, n));
  pos_ += n;
  // The head on the last new token only.
  Tensor last = x_.Slice(n - 1, n);
  Tensor norm = Rows(norm_, 1);
  Tensor mean = Rows(mean_, 1);
  Tensor rstd = Rows(rstd_, 1);
  if (c.is_llama()) {
    LOOM_ASSIGN_OR_RETURN(Tensor w, P("final_norm.weight"));
    LOOM_RETURN_IF_ERROR(ops::RMSNormForward(last, w, c.norm_eps, norm, rstd));
  } else {
    LOOM_ASSIGN_OR_RETURN(Tensor w, P("ln_f.weight"));
    LOOM_ASSIGN_OR_RETURN(Tensor b, P("ln_f.bias"));
    LOOM_RETURN_IF_ERROR(ops::LayerNormForward(last, w, b, c.norm_eps, norm, mean, rstd));
  }
  LOOM_ASSIGN_OR_RETURN(Tensor head, P(c.tied_embeddings ? "wte.weight" : "lm_head.weight"));
  LOOM_RETURN_IF_ERROR(ops::LinearForward(norm, head, nullptr, logits_));
  return logits_;
}

}  // namespace loom
