// A second line of defence behind the PyTorch fixtures: central finite differences of the
// whole model's loss (fp32, tiny model) against its backward pass, for a few elements of every
// parameter tensor, GPT-2 and LLaMA. Weights are larger than a real init so every path carries
// a gradient well above float32 noise.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/gpt.h"
#include "runtime/philox.h"

namespace loom {
namespace {

GptConfig Tiny(bool llama) {
  GptConfig c;
  c.family = llama ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = 2;
  c.heads = 2;
  c.kv_heads = llama ? 1 : 2;
  c.hidden = 8;
  c.ffn_hidden = llama ? 12 : 32;
  c.vocab = 11;
  c.padded_vocab = 16;
  c.max_seq = 6;
  c.tied_embeddings = !llama;
  return c;
}

void CheckFiniteDifferences(bool llama) {
  const GptConfig c = Tiny(llama);
  auto m = GptModel::Create(c, CpuDevice());
  ASSERT_TRUE(m.ok()) << m.status();
  GptModel& model = **m;
  const ParamTable& layout = model.layout();
  std::vector<float> p(layout.total());
  for (const ParamSpec& s : layout.specs()) {
    const int64_t row = s.shape.rank() > 1 ? s.shape[1] : s.numel();
    for (int64_t i = 0; i < s.numel(); ++i) {
      float v = 0.4f * NormalAt(99 + s.offset, static_cast<uint64_t>(i));
      if (s.init == InitKind::kOnes) v = 1.0f + 0.25f * v;
      if (s.zero_rows_from >= 0 && i / row >= s.zero_rows_from) v = 0.0f;
      p[s.offset + i] = v;
    }
  }
  ASSERT_TRUE(model.params().CopyFromFloats(p).ok());
  const int B = 2, T = 5;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (int i = 0; i < B * T; ++i) {
    tok[i] = (7 * i + 3) % c.vocab;
    tgt[i] = (5 * i + 1) % c.vocab;
  }
  Tensor tokens = Tensor::FromVectorI32(tok, Shape{B, T});
  Tensor targets = Tensor::FromVectorI32(tgt, Shape{B, T});
  ASSERT_TRUE(model.ZeroGrads().ok());
  ASSERT_TRUE(model.ForwardBackward(tokens, targets, 1.0f).ok());
  std::vector<float> grads = *model.grads().ToFloatVector();
  double max_grad = 0;
  for (float g : grads) max_grad = std::max(max_grad, static_cast<double>(std::fabs(g)));

  auto loss_at = [&](int64_t index, float value) {
    std::vector<float> q = p;
    q[index] = value;
    EXPECT_TRUE(model.params().CopyFromFloats(q).ok());
    auto l = model.ForwardBackward(tokens, targets, 1.0f, /*backward=*/false);
    EXPECT_TRUE(l.ok()) << l.status();
    return static_cast<double>(*l);
  };
  // eps balances truncation (~eps^2 * f''') against float32 rounding of the loss (~1e-7 / eps).
  const float eps = 1e-2f;
  int checked = 0;
  for (const ParamSpec& s : layout.specs()) {
    for (int k = 0; k < 3; ++k) {
      int64_t i = (k * 7919 + 13) % s.numel();
      if (s.zero_rows_from >= 0) i %= s.zero_rows_from * s.shape[1];  // a real vocab row
      const int64_t idx = s.offset + i;
      const float x = p[idx];
      const float xp = x + eps, xm = x - eps;
      const double fd = (loss_at(idx, xp) - loss_at(idx, xm)) / (static_cast<double>(xp) - xm);
      const double g = grads[idx];
      EXPECT_NEAR(g, fd, 2e-3 * max_grad + 2e-2 * std::fabs(fd))
          << s.name << "[" << i << "] (max |grad| " << max_grad << ")";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * static_cast<int>(layout.specs().size()));
}

TEST(FiniteDifferences, Gpt2) { CheckFiniteDifferences(false); }
TEST(FiniteDifferences, Llama) { CheckFiniteDifferences(true); }

}  // namespace
}  // namespace loom
