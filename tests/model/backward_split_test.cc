// The backward split (ZERO_BUBBLE): for GPT-2 (LayerNorm, biases, GELU, learned positions,
// tied head) and LLaMA (RMSNorm, SwiGLU, RoPE, grouped-query attention), under every
// recomputation mode, the input-gradient half (B) then the weight-gradient half (W) of each
// micro-batch gives the fused backward's parameter gradients and input gradient bit for bit:
// on the whole model (embedding W-only, head), on a middle stage (input gradient), with B's of
// several micro-batches before their W's. Also: the memory the slots hold is what
// MeasureActivations reports (without recomputation exactly the plain backward's slot), and W
// before B, B twice, B without the split are refused.
#include <cmath>
#include <cstring>
#include <memory>
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
  c.layers = 3;
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

constexpr int kB = 2, kT = 5;

std::unique_ptr<GptModel> Make(const GptConfig& c, const GptStage& stage, Recompute r) {
  auto m = GptModel::Create(c, CpuDevice(), DType::kF32, {}, stage, r);
  EXPECT_TRUE(m.ok()) << m.status();
  GptModel& model = **m;
  std::vector<float> p(model.layout().total());
  for (const ParamSpec& s : model.layout().specs()) {
    for (int64_t i = 0; i < s.numel(); ++i) {
      float v = 0.4f * NormalAt(7 + s.offset, static_cast<uint64_t>(i));
      if (s.init == InitKind::kOnes) v += 1.0f;
      p[s.offset + i] = v;
    }
  }
  EXPECT_TRUE(model.params().CopyFromFloats(p).ok());
  EXPECT_TRUE(model.SetShape(kB, kT).ok());
  return std::move(*m);
}

Tensor Ints(int mb, int mult, int vocab) {
  std::vector<int32_t> v(kB * kT);
  for (int i = 0; i < kB * kT; ++i) v[i] = (mult * i + 3 * mb + 1) % vocab;
  return Tensor::FromVectorI32(v, Shape{kB, kT});
}

std::vector<float> Noise(int64_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = NormalAt(seed, static_cast<uint64_t>(i));
  return v;
}

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Result {
  std::vector<float> grads;
  std::vector<std::vector<float>> input_grads;  // per micro-batch (middle stage)
};

// Runs `mbs` micro-batches through a one-chunk model: fused (ChunkBackward right after each
// forward), or split with every forward and B first and the W's after them in order.
// With `w_at_once` each micro-batch's W follows its B at once (F B W F B W ..., what a
// one-stage pipeline runs).
Result RunSteps(const GptConfig& c, const GptStage& stage, Recompute r, bool split, int mbs,
                bool w_skip_last = false, bool w_at_once = false) {
  std::unique_ptr<GptModel> m = Make(c, stage, r);
  Result out;
  if (m == nullptr) return out;
  GptModel& model = *m;
  if (split) {
    EXPECT_TRUE(model.set_split_backward(true).ok());
  }
  EXPECT_TRUE(model.ZeroGrads().ok());
  const int64_t rows = model.activation_rows(), C = c.hidden;
  auto forward_and_input_grad = [&](int mb) {
    Tensor tokens = Ints(mb, 7, c.vocab), targets = Ints(mb, 5, c.vocab);
    if (!model.ChunkHasEmbedding(0)) {
      auto in = model.ChunkInput(0, mb);
      ASSERT_TRUE(in.ok()) << in.status();
      ASSERT_TRUE(in->CopyFromFloats(Noise(rows * C, 100 + mb)).ok());
    }
    auto loss = model.ChunkForward(0, mb, &tokens, &targets, 0.5f);
    ASSERT_TRUE(loss.ok()) << loss.status();
    if (!model.ChunkHasHead(0)) {
      auto d = model.ChunkOutputGrad(0, mb);
      ASSERT_TRUE(d.ok()) << d.status();
      ASSERT_TRUE(d->CopyFromFloats(Noise(rows * C, 200 + mb)).ok());
    }
    absl::Status s = split ? model.ChunkBackwardInput(0, mb) : model.ChunkBackward(0, mb);
    ASSERT_TRUE(s.ok()) << s;
    if (!model.ChunkHasEmbedding(0))
      out.input_grads.push_back(*model.ChunkInputGrad().ToFloatVector());
  };
  for (int mb = 0; mb < mbs; ++mb) {
    forward_and_input_grad(mb);
    if (split && w_at_once) {
      EXPECT_TRUE(model.ChunkBackwardWeight(0, mb).ok());
    }
  }
  if (split && !w_at_once) {
    for (int mb = 0; mb < mbs; ++mb) {
      if (w_skip_last && mb == mbs - 1) continue;
      absl::Status s = model.ChunkBackwardWeight(0, mb);
      EXPECT_TRUE(s.ok()) << s;
    }
  }
  out.grads = *model.grads().ToFloatVector();
  return out;
}

struct Case {
  bool llama;
  Recompute recompute;
};

class BackwardSplitTest : public ::testing::TestWithParam<Case> {};

TEST_P(BackwardSplitTest, WholeModelBThenWEqualsFusedBitwise) {
  const GptConfig c = Tiny(GetParam().llama);
  for (int mbs : {1, 3}) {
    const Result fused = RunSteps(c, {}, GetParam().recompute, false, mbs);
    const Result split = RunSteps(c, {}, GetParam().recompute, true, mbs, false, true);
    ASSERT_FALSE(fused.grads.empty());
    EXPECT_TRUE(BitwiseEqual(fused.grads, split.grads)) << "micro-batches " << mbs;
  }
}

TEST_P(BackwardSplitTest, WholeModelWeightPassesDeferredAgreeTo1e6) {
  // All B's first, then the W's. With GPT-2's tied embedding the head's gradient (in each
  // forward) and the embedding's (in each W) now reach wte in another order, so the sums
  // differ in the last bits; every other parameter is bitwise equal.
  const GptConfig c = Tiny(GetParam().llama);
  const Result fused = RunSteps(c, {}, GetParam().recompute, false, 3);
  const Result split = RunSteps(c, {}, GetParam().recompute, true, 3);
  ASSERT_EQ(fused.grads.size(), split.grads.size());
  for (size_t i = 0; i < fused.grads.size(); ++i) {
    ASSERT_NEAR(fused.grads[i], split.grads[i], 1e-6 * (1 + std::fabs(fused.grads[i]))) << i;
  }
  if (GetParam().llama) {
    EXPECT_TRUE(BitwiseEqual(fused.grads, split.grads));
  }
}

TEST_P(BackwardSplitTest, MiddleStageInputGradAndWeightsEqualFusedBitwise) {
  const GptConfig c = Tiny(GetParam().llama);
  GptStage middle;
  middle.chunks = {{1, 2}};
  middle.embedding = false;
  middle.head = false;
  const Result fused = RunSteps(c, middle, GetParam().recompute, false, 3);
  const Result split = RunSteps(c, middle, GetParam().recompute, true, 3);
  ASSERT_EQ(fused.input_grads.size(), 3u);
  ASSERT_EQ(split.input_grads.size(), 3u);
  for (int mb = 0; mb < 3; ++mb) {
    EXPECT_TRUE(BitwiseEqual(fused.input_grads[mb], split.input_grads[mb])) << "mb " << mb;
  }
  EXPECT_TRUE(BitwiseEqual(fused.grads, split.grads));
}

TEST_P(BackwardSplitTest, SkippingOneWeightPassChangesTheGradients) {
  // The planted bug of a runner that drops a W: the test above would see it.
  const GptConfig c = Tiny(GetParam().llama);
  const Result fused = RunSteps(c, {}, GetParam().recompute, false, 2);
  const Result skipped = RunSteps(c, {}, GetParam().recompute, true, 2, /*w_skip_last=*/true);
  EXPECT_FALSE(BitwiseEqual(fused.grads, skipped.grads));
}

TEST_P(BackwardSplitTest, SlotsHoldWhatMeasureActivationsReports) {
  const GptConfig c = Tiny(GetParam().llama);
  std::unique_ptr<GptModel> m = Make(c, {}, GetParam().recompute);
  ASSERT_TRUE(m->set_split_backward(true).ok());
  Tensor tokens = Ints(0, 7, c.vocab), targets = Ints(0, 5, c.vocab);
  ASSERT_TRUE(m->ChunkForward(0, 0, &tokens, &targets, 1.0f).ok());
  ASSERT_TRUE(m->ChunkBackwardInput(0, 0).ok());
  auto plain =
      GptModel::MeasureActivations(c, 1, false, {}, DType::kF32, GetParam().recompute, kB, kT);
  auto split = GptModel::MeasureActivations(c, 1, false, {}, DType::kF32, GetParam().recompute, kB,
                                            kT, /*cp=*/1, /*split_backward=*/true);
  ASSERT_TRUE(plain.ok() && split.ok());
  EXPECT_EQ(split->slot[0], m->slot_bytes());
  if (GetParam().recompute == Recompute::kNone) {
    // W's operands live in the plain slot (output gradients in tensors B has finished with):
    // a ZERO_BUBBLE slot is exactly a 1F1B slot.
    EXPECT_EQ(split->slot[0], plain->slot[0]);
  } else {
    EXPECT_GT(split->slot[0], plain->slot[0]);  // the rebuilt tensors W reads
  }
  EXPECT_EQ(split->scratch, plain->scratch);
  ASSERT_TRUE(m->ChunkBackwardWeight(0, 0).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Families, BackwardSplitTest,
    ::testing::Values(Case{false, Recompute::kNone}, Case{false, Recompute::kSelective},
                      Case{false, Recompute::kFull}, Case{true, Recompute::kNone},
                      Case{true, Recompute::kSelective}, Case{true, Recompute::kFull}),
    [](const ::testing::TestParamInfo<Case>& i) {
      return std::string(i.param.llama ? "llama_" : "gpt2_") + RecomputeName(i.param.recompute);
    });

// The data-parallel overlap: the gradient-ready hooks (where the reducer launches buckets) fire
// in the W pass, not in B, and in the fused backward's order.
TEST(BackwardSplitOrderTest, GradReadyHooksFireInWInTheFusedOrder) {
  for (bool llama : {false, true}) {
    const GptConfig c = Tiny(llama);
    std::vector<int> fused_order, split_order;
    for (bool split : {false, true}) {
      std::unique_ptr<GptModel> m = Make(c, {}, Recompute::kNone);
      std::vector<int>* order = split ? &split_order : &fused_order;
      m->set_grad_ready_hook([order](int i) {
        order->push_back(i);
        return absl::OkStatus();
      });
      if (split) {
        ASSERT_TRUE(m->set_split_backward(true).ok());
      }
      Tensor tokens = Ints(0, 7, c.vocab), targets = Ints(0, 5, c.vocab);
      ASSERT_TRUE(m->ChunkForward(0, 0, &tokens, &targets, 1.0f).ok());
      const size_t after_forward = order->size();  // the head's, fired in its forward
      if (split) {
        ASSERT_TRUE(m->ChunkBackwardInput(0, 0).ok());
        EXPECT_EQ(order->size(), after_forward) << "a hook fired in B";
        ASSERT_TRUE(m->ChunkBackwardWeight(0, 0).ok());
        EXPECT_GT(order->size(), after_forward) << "no hook fired in W";
      } else {
        ASSERT_TRUE(m->ChunkBackward(0, 0).ok());
      }
    }
    EXPECT_FALSE(fused_order.empty());
    EXPECT_EQ(split_order, fused_order) << (llama ? "llama" : "gpt2");
  }
}

TEST(BackwardSplitOrderTest, RefusesWBeforeBAndBTwiceAndBWithoutTheSplit) {
  const GptConfig c = Tiny(false);
  std::unique_ptr<GptModel> m = Make(c, {}, Recompute::kNone);
  Tensor tokens = Ints(0, 7, c.vocab), targets = Ints(0, 5, c.vocab);
  ASSERT_TRUE(m->ChunkForward(0, 0, &tokens, &targets, 1.0f).ok());
  absl::Status no_split = m->ChunkBackwardInput(0, 0);
  EXPECT_NE(std::string(no_split.message()).find("set_split_backward"), std::string::npos)
      << no_split;
  ASSERT_TRUE(m->ChunkBackward(0, 0).ok());
  ASSERT_TRUE(m->set_split_backward(true).ok());
  ASSERT_TRUE(m->ChunkForward(0, 1, &tokens, &targets, 1.0f).ok());
  absl::Status early = m->ChunkBackwardWeight(0, 1);
  EXPECT_NE(std::string(early.message()).find("before its input-gradient backward"),
            std::string::npos)
      << early;
  ASSERT_TRUE(m->ChunkBackwardInput(0, 1).ok());
  absl::Status twice = m->ChunkBackwardInput(0, 1);
  EXPECT_NE(std::string(twice.message()).find("runs twice"), std::string::npos) << twice;
  absl::Status fused_after_b = m->ChunkBackward(0, 1);
  EXPECT_FALSE(fused_after_b.ok());
  ASSERT_TRUE(m->ChunkBackwardWeight(0, 1).ok());
}

}  // namespace
}  // namespace loom
