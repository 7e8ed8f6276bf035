// Positions reset at document starts (GptModel::SetPositions), GPT-2 (learned positions) and
// LLaMA (RoPE), on the CPU:
//   - a packed row of two documents gives, for the second one, the logits, the loss and every
//     parameter's gradient of that document alone (its targets the only counted ones) to 1e-6:
//     block-diagonal attention keeps the documents apart and the reset positions give the second
//     the position rows / angles it has alone, forward and backward. Without the reset GPT-2's
//     logits move (the control that shows the comparison can see it);
//   - the split backward (ZERO_BUBBLE's B then W) keeps each micro-batch's positions for its W:
//     two micro-batches with different positions, B B then W W, give the fused gradients bit for
//     bit (GPT-2's tied wte to rounding: its two gradients then add in another order);
//   - ResetPositions (train/step_batches.h) restarts at each segment, and under context
//     parallelism cuts the whole rows' positions like the tokens (a chunk continues the count
//     of a document begun in another rank's chunk).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "model/gpt.h"
#include "runtime/philox.h"
#include "train/step_batches.h"

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
  c.max_seq = 12;
  c.tied_embeddings = !llama;
  return c;
}

std::unique_ptr<GptModel> Make(const GptConfig& c) {
  auto m = GptModel::Create(c, CpuDevice());
  EXPECT_TRUE(m.ok()) << m.status();
  GptModel& model = **m;
  std::vector<float> p(model.layout().total());
  for (const ParamSpec& s : model.layout().specs()) {
    for (int64_t i = 0; i < s.numel(); ++i) {
      float v = 0.4f * NormalAt(11 + s.offset, static_cast<uint64_t>(i));
      if (s.init == InitKind::kOnes) v += 1.0f;
      p[s.offset + i] = v;
    }
  }
  EXPECT_TRUE(model.params().CopyFromFloats(p).ok());
  return std::move(*m);
}

Tensor Row(const std::vector<int32_t>& v) {
  return Tensor::FromVectorI32(v, Shape{1, static_cast<int64_t>(v.size())});
}

std::vector<float> Floats(const Tensor& t) { return *t.ToFloatVector(); }

double MaxDiff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

// Document A (5 tokens) then document B (7 tokens) in one row of 12.
const std::vector<int32_t> kDocA = {3, 9, 1, 4, 4};
const std::vector<int32_t> kDocB = {7, 2, 10, 5, 0, 8, 6};

class PositionResetTest : public ::testing::TestWithParam<bool> {};

TEST_P(PositionResetTest, SecondDocumentOfAPackedRowIsThatDocumentAlone) {
  const GptConfig c = Tiny(GetParam());
  const int64_t a = kDocA.size(), b = kDocB.size(), T = a + b;
  std::vector<int32_t> tokens = kDocA, segments(T, 0), positions(T), targets(T, -1);
  tokens.insert(tokens.end(), kDocB.begin(), kDocB.end());
  std::fill(segments.begin() + a, segments.end(), 1);
  ASSERT_TRUE(ResetPositions(segments.data(), 1, T, 1, 0, positions.data()).ok());
  EXPECT_EQ(positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6}));
  // Document B's next-token targets (its last token predicts nothing), the only counted ones.
  std::vector<int32_t> alone_targets(b, -1);
  for (int64_t i = 0; i + 1 < b; ++i) targets[a + i] = alone_targets[i] = kDocB[i + 1];
  const int64_t V = c.padded_vocab;

  // Alone: T = 7 at positions 0..6.
  auto alone = Make(c);
  auto logits = alone->Forward(Row(kDocB));
  ASSERT_TRUE(logits.ok()) << logits.status();
  const std::vector<float> want_logits = Floats(*logits);
  ASSERT_TRUE(alone->ZeroGrads().ok());
  // Weight N / count: the gradient of the mean over the counted targets (as the trainer does).
  auto want_loss = alone->ForwardBackward(Row(kDocB), Row(alone_targets), b / double(b - 1));
  ASSERT_TRUE(want_loss.ok()) << want_loss.status();
  const std::vector<float> want_grads = Floats(alone->grads());

  auto packed = Make(c);
  packed->SetSegments({Row(segments)});
  packed->SetPositions({Row(positions)});
  logits = packed->Forward(Row(tokens));
  ASSERT_TRUE(logits.ok()) << logits.status();
  const std::vector<float> got_logits = Floats(*logits);
  EXPECT_LE(MaxDiff(got_logits.data() + a * V, want_logits.data(), b * V), 1e-6);
  ASSERT_TRUE(packed->ZeroGrads().ok());
  auto got_loss = packed->ForwardBackward(Row(tokens), Row(targets), T / double(b - 1));
  ASSERT_TRUE(got_loss.ok()) << got_loss.status();
  // Both are (sum of B's counted losses) / rows: rescale to the mean over the counted targets.
  EXPECT_NEAR(*got_loss * T / double(b - 1), *want_loss * b / double(b - 1), 1e-6);
  const std::vector<float> got_grads = Floats(packed->grads());
  for (const ParamSpec& s : packed->layout().specs()) {
    EXPECT_LE(MaxDiff(got_grads.data() + s.offset, want_grads.data() + s.offset, s.numel()), 1e-6)
        << s.name;
  }

  // The control: the same packed row without the reset. GPT-2's learned rows then differ (LLaMA's
  // RoPE is relative, so inside a block-diagonal mask it moves only by rounding).
  if (!GetParam()) {
    auto no_reset = Make(c);
    no_reset->SetSegments({Row(segments)});
    logits = no_reset->Forward(Row(tokens));
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_GT(MaxDiff(Floats(*logits).data() + a * V, want_logits.data(), b * V), 1e-2);
  }
}

TEST_P(PositionResetTest, SplitBackwardKeepsEachMicroBatchsPositions) {
  const GptConfig c = Tiny(GetParam());
  constexpr int64_t kB = 2, kT = 6;
  std::vector<Tensor> tokens, targets, segments, positions;
  for (int mb = 0; mb < 2; ++mb) {
    std::vector<int32_t> tok(kB * kT), seg(kB * kT), pos(kB * kT);
    for (int64_t i = 0; i < kB * kT; ++i) {
      tok[i] = static_cast<int32_t>((5 * i + 3 * mb + 1) % c.vocab);
      // Micro-batch 0: documents start at 2 and 4 (row 0), 3 (row 1); micro-batch 1: at 1, 5.
      const int64_t t = i % kT;
      seg[i] = static_cast<int32_t>(mb == 0 ? (i < kT ? (t >= 2) + (t >= 4) : (t >= 3))
                                            : (t >= 1) + (t >= 5));
    }
    ASSERT_TRUE(ResetPositions(seg.data(), kB, kT, 1, 0, pos.data()).ok());
    tokens.push_back(Tensor::FromVectorI32(tok, {kB, kT}));
    targets.push_back(Tensor::FromVectorI32(tok, {kB, kT}));
    segments.push_back(Tensor::FromVectorI32(seg, {kB, kT}));
    positions.push_back(Tensor::FromVectorI32(pos, {kB, kT}));
  }
  std::vector<float> grads[2];
  ParamTable layout;
  for (int split = 0; split < 2; ++split) {
    auto m = Make(c);
    ASSERT_TRUE(m->set_split_backward(split == 1).ok());
    ASSERT_TRUE(m->SetShape(kB, kT).ok());
    ASSERT_TRUE(m->ZeroGrads().ok());
    m->SetSegments(segments);
    m->SetPositions(positions);
    for (int mb = 0; mb < 2; ++mb) {
      ASSERT_TRUE(m->ChunkForward(0, mb, &tokens[mb], &targets[mb], 0.5f).ok());
      if (split == 0) ASSERT_TRUE(m->ChunkBackward(0, mb).ok());
      if (split == 1) ASSERT_TRUE(m->ChunkBackwardInput(0, mb).ok());
    }
    for (int mb = 0; split == 1 && mb < 2; ++mb) ASSERT_TRUE(m->ChunkBackwardWeight(0, mb).ok());
    grads[split] = Floats(m->grads());
    layout = m->layout();
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (const ParamSpec& s : layout.specs()) {
    const float* f = grads[0].data() + s.offset;
    const float* w = grads[1].data() + s.offset;
    if (s.name == "wte.weight" && !GetParam()) {
      // Tied: the head's gradient (in each forward) and the embedding's (in each W) reach it
      // in another order (backward_split_test), so only to rounding.
      EXPECT_LE(MaxDiff(f, w, s.numel()), 1e-6);
    } else {
      EXPECT_EQ(std::memcmp(f, w, s.numel() * sizeof(float)), 0) << s.name;
    }
  }
}

TEST_P(PositionResetTest, PositionsOfTheWrongShapeAreRefused) {
  auto m = Make(Tiny(GetParam()));
  m->SetPositions({Tensor::FromVectorI32(std::vector<int32_t>(5, 0), {1, 5})});
  auto logits = m->Forward(Row(kDocB));
  ASSERT_FALSE(logits.ok());
  EXPECT_NE(logits.status().message().find("positions of micro-batch 0 are"), std::string::npos)
      << logits.status();
}

INSTANTIATE_TEST_SUITE_P(Families, PositionResetTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "llama" : "gpt2"; });

TEST(ResetPositionsTest, RestartsAtEachSegmentAndCutsForContextParallelism) {
  // Two rows of 8: documents start at 0, 3, 6 (row 0) and 0, 5 (row 1).
  const std::vector<int32_t> seg = {0, 0, 0, 1, 1, 1, 2, 2, 0, 0, 0, 0, 0, 1, 1, 1};
  std::vector<int32_t> whole(16);
  ASSERT_TRUE(ResetPositions(seg.data(), 2, 8, 1, 0, whole.data()).ok());
  EXPECT_EQ(whole, (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3, 4, 0, 1, 2}));
  // cp 2: chunks of 2; rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2 of each row.
  std::vector<int32_t> r0(8), r1(8);
  ASSERT_TRUE(ResetPositions(seg.data(), 2, 8, 2, 0, r0.data()).ok());
  ASSERT_TRUE(ResetPositions(seg.data(), 2, 8, 2, 1, r1.data()).ok());
  EXPECT_EQ(r0, (std::vector<int32_t>{0, 1, 0, 1, 0, 1, 1, 2}));
  EXPECT_EQ(r1, (std::vector<int32_t>{2, 0, 1, 2, 2, 3, 4, 0}));
  // A row that does not cut into 2 * cp chunks is refused.
  EXPECT_FALSE(ResetPositions(seg.data(), 1, 6, 2, 0, r0.data()).ok());
}

}  // namespace
}  // namespace loom
