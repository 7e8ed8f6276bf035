// The whole model against PyTorch (tools/gen_model_fixture.py, float64 reference): for a tiny
// GPT-2 and a tiny LLaMA with padded vocab, loom on the CPU matches the logits, the loss, the
// gradient of every parameter, and the losses and gradient norms of 10 clipped AdamW steps.
// The fixture's weights come from the model files the generator wrote, so the llm.c and loom
// file readers are checked against an independent writer on the way.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/adamw.h"
#include "model/gpt.h"
#include "model/model_file.h"
#include "runtime/dtype.h"
#include "tests/model/model_testing.h"

namespace loom {
namespace {

using testing::Fixture;

// The float32 rounding of a float64 reference through a few dozen operations stays far below
// this; a wrong convention (a transposed weight, a missing mask, a swapped gate) is off by
// percents.
constexpr double kRtol = 1e-4;
constexpr double kFloor = 1e-5;

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto fx = testing::LoadModelFixture(GetParam());
    ASSERT_TRUE(fx.ok()) << fx.status();
    fx_ = std::move(*fx);
    auto m = testing::ModelFromFixture(fx_);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    auto tok = fx_.Get("tokens");
    auto tgt = fx_.Get("targets");
    ASSERT_TRUE(tok.ok() && tgt.ok());
    tokens_ = *tok;
    targets_ = *tgt;
  }

  Fixture fx_;
  std::unique_ptr<GptModel> model_;
  Tensor tokens_, targets_;
};

TEST_P(GoldenTest, ModelFileHoldsTheFixtureWeights) {
  const std::string file = GetParam() == "gpt2" ? "gpt2.llmc.bin" : "llama.loom.bin";
  auto w = ReadModelFile(testing::ModelFixturePath(file));
  ASSERT_TRUE(w.ok()) << w.status();
  const GptConfig& want = model_->config();
  EXPECT_TRUE(CheckSameShape(want, w->config, file).ok()) << CheckSameShape(want, w->config, file);
  EXPECT_EQ(w->config.norm_eps, want.norm_eps);
  if (want.is_llama()) {
    EXPECT_EQ(w->config.rope_theta, want.rope_theta);
  }
  auto p = model_->params().ToFloatVector();
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(w->params.size(), p->size());
  EXPECT_EQ(std::memcmp(w->params.data(), p->data(), p->size() * 4), 0)
      << file << " does not hold the fixture's parameters in ParamTable order";
}

TEST_P(GoldenTest, Logits) {
  auto logits = model_->Forward(tokens_);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_TRUE(testing::MatchesFixtureScaled(*logits, fx_, "logits", kRtol, kFloor));
}

TEST_P(GoldenTest, LossAndEveryGradient) {
  ASSERT_TRUE(model_->ZeroGrads().ok());
  auto loss = model_->ForwardBackward(tokens_, targets_, 1.0f);
  ASSERT_TRUE(loss.ok()) << loss.status();
  auto want = fx_.Float("loss");
  ASSERT_TRUE(want.ok());
  EXPECT_NEAR(*loss, *want, kRtol * std::fabs(*want));
  int checked = 0;
  for (const ParamSpec& s : model_->layout().specs()) {
    EXPECT_TRUE(
        testing::MatchesFixtureScaled(model_->Grad(s), fx_, "grad/" + s.name, kRtol, kFloor));
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(model_->layout().specs().size()));
  // Padded vocab rows never receive a gradient.
  const ParamSpec* head =
      *model_->layout().Find(model_->config().tied_embeddings ? "wte.weight" : "lm_head.weight");
  auto g = model_->Grad(*head).ToFloatVector();
  ASSERT_TRUE(g.ok());
  const int64_t C = model_->config().hidden;
  for (int64_t i = model_->config().vocab * C; i < static_cast<int64_t>(g->size()); ++i) {
    ASSERT_EQ((*g)[i], 0.0f) << "padded row " << i / C << " of " << head->name;
  }
}

// Gradients accumulate: two micro-batches of one row each with loss_weight 1/2 give the
// gradient of the mean over both rows.
TEST_P(GoldenTest, MicroBatchesAccumulate) {
  ASSERT_TRUE(model_->ZeroGrads().ok());
  const int64_t T = tokens_.dim(1);
  double loss_sum = 0;
  for (int64_t b = 0; b < tokens_.dim(0); ++b) {
    auto tok = tokens_.Slice(b, b + 1);
    auto tgt = targets_.Slice(b, b + 1);
    ASSERT_EQ(tok.shape(), (Shape{1, T}));
    auto loss = model_->ForwardBackward(tok, tgt, 0.5f);
    ASSERT_TRUE(loss.ok()) << loss.status();
    loss_sum += *loss;
  }
  EXPECT_NEAR(loss_sum / 2, *fx_.Float("loss"), kRtol * *fx_.Float("loss"));
  for (const ParamSpec& s : model_->layout().specs()) {
    EXPECT_TRUE(
        testing::MatchesFixtureScaled(model_->Grad(s), fx_, "grad/" + s.name, kRtol, kFloor));
  }
}

TEST_P(GoldenTest, TenClippedAdamWSteps) {
  auto train = testing::TrainingFromFixture(fx_);
  ASSERT_TRUE(train.ok()) << train.status();
  auto opt = AdamW::Create(model_->layout(), train->adam, CpuDevice());
  ASSERT_TRUE(opt.ok()) << opt.status();
  auto want_loss = fx_.Get("step_losses");
  auto want_norm = fx_.Get("grad_norms");
  ASSERT_TRUE(want_loss.ok() && want_norm.ok());
  const int steps = static_cast<int>(want_loss->numel());
  ASSERT_EQ(steps, 10);
  bool clipped = false, unclipped = false;
  for (int k = 0; k < steps; ++k) {
    double norm = 0;
    auto loss = testing::TrainStep(*model_, *opt, tokens_, targets_, train->lr, train->grad_clip,
                                   k + 1, &norm);
    ASSERT_TRUE(loss.ok()) << loss.status();
    const float wl = want_loss->data_as<float>()[k], wn = want_norm->data_as<float>()[k];
    EXPECT_NEAR(*loss, wl, kRtol * std::fabs(wl)) << "loss of step " << k + 1;
    EXPECT_NEAR(norm, wn, kRtol * wn) << "gradient norm of step " << k + 1;
    (wn > train->grad_clip ? clipped : unclipped) = true;
  }
  // The fixture covers both branches of the clipping rule.
  EXPECT_TRUE(clipped);
  EXPECT_TRUE(unclipped);
}

INSTANTIATE_TEST_SUITE_P(Families, GoldenTest, ::testing::Values("gpt2", "llama"),
                         [](const auto& info) { return info.param; });

// llm.c's bf16 files (version 5), as PyTorch rounds them, read back as those bf16 values.
TEST(GoldenFiles, LlmcBf16FileReadsAsRoundedWeights) {
  auto fx = testing::LoadModelFixture("gpt2");
  ASSERT_TRUE(fx.ok()) << fx.status();
  auto want = testing::ModelFromFixture(*fx);
  ASSERT_TRUE(want.ok()) << want.status();
  auto w = ReadModelFile(testing::ModelFixturePath("gpt2.llmc_bf16.bin"));
  ASSERT_TRUE(w.ok()) << w.status();
  auto p = (*want)->params().ToFloatVector();
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(w->params.size(), p->size());
  int bad = 0;
  for (size_t i = 0; i < p->size(); ++i) {
    const float rounded = Bf16BitsToFloat(FloatToBf16Bits((*p)[i]));
    if (w->params[i] != rounded && ++bad <= 5) {
      ADD_FAILURE() << "element " << i << ": read " << w->params[i] << ", want " << rounded;
    }
  }
  EXPECT_EQ(bad, 0);
}

}  // namespace
}  // namespace loom
