// The golden checks: run one op family on the inputs of a PyTorch fixture
// (tests/fixtures/ops/*.bin, written by tools/gen_op_fixtures.py) and compare every output and
// gradient with PyTorch's. Each check takes the device to run on and the tolerance, so the
// CPU test (golden_test.cc, fp32 at 1e-5) and a CUDA run share one definition of what is
// compared.
//
// Outputs that the contract says are overwritten start filled with a sentinel (so an op that
// accumulates into them, or skips an element, fails); parameter gradients start from the
// fixture's nonzero `*_init` values and must come back as init + gradient.
#pragma once

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/optimizer.h"
#include "ops/rope.h"
#include "runtime/tensor.h"
#include "tests/ops/fixture.h"

namespace loom::testing {

// Fails the current test (and returns from it) unless `expr` is OK.
#define GOLDEN_OK(expr)                                                  \
  do {                                                                   \
    const ::absl::Status golden_status_ = (expr);                        \
    ASSERT_TRUE(golden_status_.ok()) << #expr << ": " << golden_status_; \
  } while (0)
#define GOLDEN_ASSIGN(lhs, expr) \
  GOLDEN_ASSIGN_IMPL(LOOM_STATUS_CONCAT(golden_or_, __LINE__), lhs, expr)
#define GOLDEN_ASSIGN_IMPL(tmp, lhs, expr)                \
  auto tmp = (expr);                                      \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status(); \
  lhs = std::move(tmp).value()

struct Tolerance {
  double rtol = kGoldenRtol;
  double atol = kGoldenAtol;
};

// A fixture with the device and tolerance it is checked on.
class GoldenCase {
 public:
  GoldenCase(Fixture fx, Device* device, Tolerance tol)
      : fx_(std::move(fx)), device_(device), tol_(tol) {}

  const Fixture& fx() const { return fx_; }
  bool Has(const std::string& name) const { return fx_.Has(name); }

  // The named fixture tensor, copied onto the device.
  absl::StatusOr<Tensor> In(const std::string& name) const {
    LOOM_ASSIGN_OR_RETURN(Tensor host, fx_.Get(name));
    return host.To(device_);
  }
  // A device tensor shaped like fixture entry `name`, every element set to a sentinel.
  absl::StatusOr<Tensor> Sentinel(const std::string& like) const {
    LOOM_ASSIGN_OR_RETURN(Tensor host, fx_.Get(like));
    std::vector<float> junk(host.numel(), 12345.0f);
    LOOM_RETURN_IF_ERROR(host.CopyFromFloats(junk));
    return host.To(device_);
  }
  ::testing::AssertionResult Matches(const Tensor& got, const std::string& name) const {
    return MatchesFixture(got, fx_, name, tol_.rtol, tol_.atol);
  }

 private:
  Fixture fx_;
  Device* device_;
  Tolerance tol_;
};

inline absl::StatusOr<GoldenCase> LoadCase(const std::string& name, Device* device,
                                           Tolerance tol = {}) {
  LOOM_ASSIGN_OR_RETURN(Fixture fx, Fixture::Load(name));
  return GoldenCase(std::move(fx), device, tol);
}

// Every fixture the checks below read; the coverage test asserts that the fixture folder
// holds exactly these, so a fixture without a check (or a check without a fixture) fails.
inline const std::vector<std::string>& GoldenFixtureNames() {
  static const auto* names = new std::vector<std::string>{"linear",
                                                          "linear_nobias",
                                                          "linear_gelu",
                                                          "gemm_nn",
                                                          "gemm_tn",
                                                          "gemm_nt",
                                                          "gemm_tt",
                                                          "gelu",
                                                          "swiglu",
                                                          "add",
                                                          "embedding",
                                                          "embedding_vocab_slice",
                                                          "layernorm",
                                                          "rmsnorm",
                                                          "fused_residual_layernorm",
                                                          "fused_residual_rmsnorm",
                                                          "rope",
                                                          "attention_mha",
                                                          "attention_gqa",
                                                          "cross_entropy",
                                                          "cross_entropy_padded",
                                                          "cross_entropy_vocab_parallel",
                                                          "adamw",
                                                          "sum_of_squares"};
  return *names;
}

// ---- ops/linear.h -------------------------------------------------------------------------

inline void CheckLinear(const std::string& name, Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase(name, dev, tol));
  const bool has_bias = c.Has("bias");
  const bool gelu = c.Has("pre_gelu");
  GOLDEN_ASSIGN(Tensor inp, c.In("inp"));
  GOLDEN_ASSIGN(Tensor weight, c.In("weight"));
  Tensor bias;
  if (has_bias) {
    GOLDEN_ASSIGN(bias, c.In("bias"));
  }
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  Tensor pre;
  if (gelu) {
    GOLDEN_ASSIGN(pre, c.Sentinel("pre_gelu"));
  }
  GOLDEN_OK(
      ops::LinearForward(inp, weight, has_bias ? &bias : nullptr, out, gelu ? &pre : nullptr));
  EXPECT_TRUE(c.Matches(out, "out"));
  if (gelu) {
    EXPECT_TRUE(c.Matches(pre, "pre_gelu"));
  }

  GOLDEN_ASSIGN(Tensor dout, c.In("dout"));
  GOLDEN_ASSIGN(Tensor dinp, c.Sentinel("dinp"));
  GOLDEN_ASSIGN(Tensor dweight, c.In("dweight_init"));
  Tensor dbias;
  if (has_bias) {
    GOLDEN_ASSIGN(dbias, c.In("dbias_init"));
  }
  GOLDEN_OK(ops::LinearBackward(dout, inp, weight, &dinp, dweight, has_bias ? &dbias : nullptr));
  EXPECT_TRUE(c.Matches(dinp, "dinp"));
  EXPECT_TRUE(c.Matches(dweight, "dweight"));
  if (has_bias) {
    EXPECT_TRUE(c.Matches(dbias, "dbias"));
  }

  // Without dinp (the first layer's input needs none) the weight gradient is the same.
  GOLDEN_ASSIGN(Tensor dweight2, c.In("dweight_init"));
  GOLDEN_OK(ops::LinearBackward(dout, inp, weight, nullptr, dweight2, nullptr));
  EXPECT_TRUE(c.Matches(dweight2, "dweight"));
}

inline void CheckGemm(const std::string& name, Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase(name, dev, tol));
  GOLDEN_ASSIGN(Tensor a, c.In("a"));
  GOLDEN_ASSIGN(Tensor b, c.In("b"));
  GOLDEN_ASSIGN(Tensor out, c.In("c_init"));
  GOLDEN_ASSIGN(int64_t ta, c.fx().Int("trans_a"));
  GOLDEN_ASSIGN(int64_t tb, c.fx().Int("trans_b"));
  GOLDEN_ASSIGN(float alpha, c.fx().Float("alpha"));
  GOLDEN_ASSIGN(float beta, c.fx().Float("beta"));
  GOLDEN_OK(ops::Gemm(a, ta != 0, b, tb != 0, out, alpha, beta));
  EXPECT_TRUE(c.Matches(out, "c"));
}

// ---- ops/activation.h ---------------------------------------------------------------------

inline void CheckGelu(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("gelu", dev, tol));
  GOLDEN_ASSIGN(Tensor x, c.In("x"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_OK(ops::GeluForward(x, out));
  EXPECT_TRUE(c.Matches(out, "out"));
  GOLDEN_ASSIGN(Tensor dout, c.In("dout"));
  GOLDEN_ASSIGN(Tensor dx, c.Sentinel("dx"));
  GOLDEN_OK(ops::GeluBackward(dout, x, dx));
  EXPECT_TRUE(c.Matches(dx, "dx"));
}

inline void CheckSwiGLU(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("swiglu", dev, tol));
  GOLDEN_ASSIGN(Tensor inp, c.In("inp"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_OK(ops::SwiGLUForward(inp, out));
  EXPECT_TRUE(c.Matches(out, "out"));
  GOLDEN_ASSIGN(Tensor dout, c.In("dout"));
  GOLDEN_ASSIGN(Tensor dinp, c.Sentinel("dinp"));
  GOLDEN_OK(ops::SwiGLUBackward(dout, inp, dinp));
  EXPECT_TRUE(c.Matches(dinp, "dinp"));
}

inline void CheckAdd(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("add", dev, tol));
  GOLDEN_ASSIGN(Tensor a, c.In("a"));
  GOLDEN_ASSIGN(Tensor b, c.In("b"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_OK(ops::Add(a, b, out));
  EXPECT_TRUE(c.Matches(out, "out"));
  // out may alias an input (the residual stream is updated in place).
  GOLDEN_OK(ops::Add(a, b, a));
  EXPECT_TRUE(c.Matches(a, "out"));
}

// ---- ops/embedding.h ----------------------------------------------------------------------

inline void CheckEmbedding(const std::string& name, Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase(name, dev, tol));
  const bool has_wpe = c.Has("wpe");
  GOLDEN_ASSIGN(int64_t vocab_start, c.fx().Int("vocab_start"));
  GOLDEN_ASSIGN(Tensor tokens, c.In("tokens"));
  GOLDEN_ASSIGN(Tensor wte, c.In("wte"));
  Tensor wpe;
  if (has_wpe) {
    GOLDEN_ASSIGN(wpe, c.In("wpe"));
  }
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_OK(ops::EmbeddingForward(tokens, wte, has_wpe ? &wpe : nullptr, out, vocab_start));
  EXPECT_TRUE(c.Matches(out, "out"));

  GOLDEN_ASSIGN(Tensor dout, c.In("dout"));
  GOLDEN_ASSIGN(Tensor dwte, c.In("dwte_init"));
  Tensor dwpe;
  if (has_wpe) {
    GOLDEN_ASSIGN(dwpe, c.In("dwpe_init"));
  }
  GOLDEN_OK(ops::EmbeddingBackward(tokens, dout, dwte, has_wpe ? &dwpe : nullptr, vocab_start));
  EXPECT_TRUE(c.Matches(dwte, "dwte"));
  if (has_wpe) {
    EXPECT_TRUE(c.Matches(dwpe, "dwpe"));
  }
}

// ---- ops/norm.h ---------------------------------------------------------------------------

inline void CheckLayerNorm(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("layernorm", dev, tol));
  GOLDEN_ASSIGN(float eps, c.fx().Float("eps"));
  GOLDEN_ASSIGN(Tensor x, c.In("x"));
  GOLDEN_ASSIGN(Tensor w, c.In("weight"));
  GOLDEN_ASSIGN(Tensor b, c.In("bias"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_ASSIGN(Tensor mean, c.Sentinel("mean"));
  GOLDEN_ASSIGN(Tensor rstd, c.Sentinel("rstd"));
  GOLDEN_OK(ops::LayerNormForward(x, w, b, eps, out, mean, rstd));
  EXPECT_TRUE(c.Matches(out, "out"));
  EXPECT_TRUE(c.Matches(mean, "mean"));
  EXPECT_TRUE(c.Matches(rstd, "rstd"));

  // Backward reads PyTorch's statistics, so it is checked on its own.
  GOLDEN_ASSIGN(Tensor dout, c.In("dout"));
  GOLDEN_ASSIGN(Tensor mean_ref, c.In("mean"));
  GOLDEN_ASSIGN(Tensor rstd_ref, c.In("rstd"));
  GOLDEN_ASSIGN(Tensor dx, c.Sentinel("dx"));
  GOLDEN_ASSIGN(Tensor dw, c.In("dweight_init"));
  GOLDEN_ASSIGN(Tensor db, c.In("dbias_init"));
  GOLDEN_OK(ops::LayerNormBackward(dout, x, w, mean_ref, rstd_ref, dx, dw, db));
  EXPECT_TRUE(c.Matches(dx, "dx"));
  EXPECT_TRUE(c.Matches(dw, "dweight"));
  EXPECT_TRUE(c.Matches(db, "dbias"));
}

inline void CheckRMSNorm(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("rmsnorm", dev, tol));
  GOLDEN_ASSIGN(float eps, c.fx().Float("eps"));
  GOLDEN_ASSIGN(Tensor x, c.In("x"));
  GOLDEN_ASSIGN(Tensor w, c.In("weight"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_ASSIGN(Tensor rstd, c.Sentinel("rstd"));
  GOLDEN_OK(ops::RMSNormForward(x, w, eps, out, rstd));
  EXPECT_TRUE(c.Matches(out, "out"));
  EXPECT_TRUE(c.Matches(rstd, "rstd"));

  GOLDEN_ASSIGN(Tensor dout, c.In("dout"));
  GOLDEN_ASSIGN(Tensor rstd_ref, c.In("rstd"));
  GOLDEN_ASSIGN(Tensor dx, c.Sentinel("dx"));
  GOLDEN_ASSIGN(Tensor dw, c.In("dweight_init"));
  GOLDEN_OK(ops::RMSNormBackward(dout, x, w, rstd_ref, dx, dw));
  EXPECT_TRUE(c.Matches(dx, "dx"));
  EXPECT_TRUE(c.Matches(dw, "dweight"));
}

inline void CheckFusedResidualLayerNorm(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("fused_residual_layernorm", dev, tol));
  GOLDEN_ASSIGN(float eps, c.fx().Float("eps"));
  GOLDEN_ASSIGN(Tensor a, c.In("a"));
  GOLDEN_ASSIGN(Tensor b, c.In("b"));
  GOLDEN_ASSIGN(Tensor w, c.In("weight"));
  GOLDEN_ASSIGN(Tensor bias, c.In("bias"));
  GOLDEN_ASSIGN(Tensor res, c.Sentinel("residual_out"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_ASSIGN(Tensor mean, c.Sentinel("mean"));
  GOLDEN_ASSIGN(Tensor rstd, c.Sentinel("rstd"));
  GOLDEN_OK(ops::FusedResidualLayerNormForward(a, b, w, bias, eps, res, out, mean, rstd));
  EXPECT_TRUE(c.Matches(res, "residual_out"));
  EXPECT_TRUE(c.Matches(out, "out"));
  EXPECT_TRUE(c.Matches(mean, "mean"));
  EXPECT_TRUE(c.Matches(rstd, "rstd"));
}

inline void CheckFusedResidualRMSNorm(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("fused_residual_rmsnorm", dev, tol));
  GOLDEN_ASSIGN(float eps, c.fx().Float("eps"));
  GOLDEN_ASSIGN(Tensor a, c.In("a"));
  GOLDEN_ASSIGN(Tensor b, c.In("b"));
  GOLDEN_ASSIGN(Tensor w, c.In("weight"));
  GOLDEN_ASSIGN(Tensor res, c.Sentinel("residual_out"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_ASSIGN(Tensor rstd, c.Sentinel("rstd"));
  GOLDEN_OK(ops::FusedResidualRMSNormForward(a, b, w, eps, res, out, rstd));
  EXPECT_TRUE(c.Matches(res, "residual_out"));
  EXPECT_TRUE(c.Matches(out, "out"));
  EXPECT_TRUE(c.Matches(rstd, "rstd"));
}

// ---- ops/rope.h ---------------------------------------------------------------------------

inline void CheckRope(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("rope", dev, tol));
  GOLDEN_ASSIGN(int64_t nh, c.fx().Int("n_head"));
  GOLDEN_ASSIGN(int64_t nkv, c.fx().Int("n_kv_head"));
  GOLDEN_ASSIGN(float theta, c.fx().Float("theta"));
  GOLDEN_ASSIGN(int64_t pos_offset, c.fx().Int("pos_offset"));
  GOLDEN_ASSIGN(Tensor qkv, c.In("qkv"));
  GOLDEN_OK(ops::RopeForward(qkv, nh, nkv, theta, pos_offset));
  EXPECT_TRUE(c.Matches(qkv, "out"));
  GOLDEN_ASSIGN(Tensor dqkv, c.In("dout"));
  GOLDEN_OK(ops::RopeBackward(dqkv, nh, nkv, theta, pos_offset));
  EXPECT_TRUE(c.Matches(dqkv, "dqkv"));
}

// ---- ops/attention.h ----------------------------------------------------------------------

inline void CheckAttention(const std::string& name, Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase(name, dev, tol));
  GOLDEN_ASSIGN(int64_t nh, c.fx().Int("n_head"));
  GOLDEN_ASSIGN(int64_t nkv, c.fx().Int("n_kv_head"));
  GOLDEN_ASSIGN(Tensor qkv, c.In("qkv"));
  GOLDEN_ASSIGN(Tensor out, c.Sentinel("out"));
  GOLDEN_ASSIGN(Tensor lse, c.Sentinel("lse"));
  GOLDEN_OK(ops::AttentionForward(qkv, nh, nkv, out, lse));
  EXPECT_TRUE(c.Matches(out, "out"));
  EXPECT_TRUE(c.Matches(lse, "lse"));

  GOLDEN_ASSIGN(Tensor dout, c.In("dout"));
  GOLDEN_ASSIGN(Tensor out_ref, c.In("out"));
  GOLDEN_ASSIGN(Tensor lse_ref, c.In("lse"));
  GOLDEN_ASSIGN(Tensor dqkv, c.Sentinel("dqkv"));
  GOLDEN_OK(ops::AttentionBackward(dout, qkv, out_ref, lse_ref, nh, nkv, dqkv));
  EXPECT_TRUE(c.Matches(dqkv, "dqkv"));
}

// ---- ops/cross_entropy.h ------------------------------------------------------------------

inline void CheckCrossEntropy(const std::string& name, Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase(name, dev, tol));
  GOLDEN_ASSIGN(float dloss, c.fx().Float("dloss"));
  GOLDEN_ASSIGN(int64_t valid_vocab, c.fx().Int("valid_vocab"));
  GOLDEN_ASSIGN(Tensor logits, c.In("logits"));
  GOLDEN_ASSIGN(Tensor targets, c.In("targets"));
  GOLDEN_ASSIGN(Tensor losses, c.Sentinel("losses"));
  GOLDEN_ASSIGN(Tensor dlogits, c.Sentinel("dlogits"));
  GOLDEN_OK(
      ops::CrossEntropyForwardBackward(logits, targets, losses, &dlogits, dloss, valid_vocab));
  EXPECT_TRUE(c.Matches(losses, "losses"));
  EXPECT_TRUE(c.Matches(dlogits, "dlogits"));

  // Loss only.
  GOLDEN_ASSIGN(Tensor losses2, c.Sentinel("losses"));
  GOLDEN_OK(
      ops::CrossEntropyForwardBackward(logits, targets, losses2, nullptr, dloss, valid_vocab));
  EXPECT_TRUE(c.Matches(losses2, "losses"));

  // dlogits written over the logits (the memory-saving path for a big vocabulary).
  GOLDEN_ASSIGN(Tensor losses3, c.Sentinel("losses"));
  GOLDEN_OK(
      ops::CrossEntropyForwardBackward(logits, targets, losses3, &logits, dloss, valid_vocab));
  EXPECT_TRUE(c.Matches(losses3, "losses"));
  EXPECT_TRUE(c.Matches(logits, "dlogits"));
}

inline void CheckVocabParallelCrossEntropy(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("cross_entropy_vocab_parallel", dev, tol));
  GOLDEN_ASSIGN(float dloss, c.fx().Float("dloss"));
  GOLDEN_ASSIGN(int64_t n_slices, c.fx().Int("n_slices"));
  GOLDEN_ASSIGN(Tensor targets, c.In("targets"));
  GOLDEN_ASSIGN(Tensor global_max, c.In("global_max"));
  GOLDEN_ASSIGN(Tensor global_sum_exp, c.In("global_sum_exp"));
  GOLDEN_ASSIGN(Tensor global_target_logit, c.In("global_target_logit"));
  for (int64_t r = 0; r < n_slices; ++r) {
    SCOPED_TRACE(absl::StrCat("slice ", r));
    const std::string s = absl::StrCat("_", r);
    GOLDEN_ASSIGN(int64_t vocab_start, c.fx().Int("vocab_start" + s));
    GOLDEN_ASSIGN(int64_t valid, c.fx().Int("valid_vocab" + s));
    GOLDEN_ASSIGN(Tensor logits, c.In("logits" + s));
    GOLDEN_ASSIGN(Tensor row_max, c.Sentinel("row_max" + s));
    GOLDEN_OK(ops::LogitsRowMax(logits, row_max, valid));
    EXPECT_TRUE(c.Matches(row_max, "row_max" + s));
    GOLDEN_ASSIGN(Tensor sum_exp, c.Sentinel("sum_exp" + s));
    GOLDEN_OK(ops::LogitsSumExp(logits, global_max, sum_exp, valid));
    EXPECT_TRUE(c.Matches(sum_exp, "sum_exp" + s));
    GOLDEN_ASSIGN(Tensor target_logit, c.Sentinel("target_logit" + s));
    GOLDEN_OK(ops::TargetLogit(logits, targets, vocab_start, target_logit));
    EXPECT_TRUE(c.Matches(target_logit, "target_logit" + s));
    GOLDEN_ASSIGN(Tensor losses, c.Sentinel("losses"));
    GOLDEN_ASSIGN(Tensor dlogits, c.Sentinel("dlogits" + s));
    GOLDEN_OK(ops::VocabParallelCrossEntropyFinish(logits, targets, vocab_start, global_max,
                                                   global_sum_exp, global_target_logit, losses,
                                                   &dlogits, dloss, valid));
    EXPECT_TRUE(c.Matches(losses, "losses"));
    EXPECT_TRUE(c.Matches(dlogits, "dlogits" + s));
  }
}

// ---- ops/optimizer.h ----------------------------------------------------------------------

inline void CheckAdamW(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("adamw", dev, tol));
  ops::AdamWParams p;
  GOLDEN_ASSIGN(p.lr, c.fx().Float("lr"));
  GOLDEN_ASSIGN(p.beta1, c.fx().Float("beta1"));
  GOLDEN_ASSIGN(p.beta2, c.fx().Float("beta2"));
  GOLDEN_ASSIGN(p.eps, c.fx().Float("eps"));
  GOLDEN_ASSIGN(p.weight_decay, c.fx().Float("weight_decay"));
  GOLDEN_ASSIGN(p.grad_scale, c.fx().Float("grad_scale"));
  GOLDEN_ASSIGN(p.step, c.fx().Int("step"));
  GOLDEN_ASSIGN(Tensor params, c.In("params_init"));
  GOLDEN_ASSIGN(Tensor grads, c.In("grads"));
  GOLDEN_ASSIGN(Tensor m, c.In("m_init"));
  GOLDEN_ASSIGN(Tensor v, c.In("v_init"));
  GOLDEN_ASSIGN(Tensor copy, c.Sentinel("params"));
  GOLDEN_OK(ops::AdamWUpdate(params, grads, m, v, p, &copy));
  EXPECT_TRUE(c.Matches(params, "params"));
  EXPECT_TRUE(c.Matches(m, "m"));
  EXPECT_TRUE(c.Matches(v, "v"));
  EXPECT_TRUE(c.Matches(copy, "params"));
}

inline void CheckSumOfSquares(Device* dev, Tolerance tol = {}) {
  GOLDEN_ASSIGN(GoldenCase c, LoadCase("sum_of_squares", dev, tol));
  GOLDEN_ASSIGN(Tensor x, c.In("x"));
  GOLDEN_ASSIGN(Tensor out, c.In("out_init"));
  GOLDEN_OK(ops::SumOfSquaresAccumulate(x, out));
  EXPECT_TRUE(c.Matches(out, "out"));
}

}  // namespace loom::testing
