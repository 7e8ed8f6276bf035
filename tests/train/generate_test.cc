// Generation (model/generator.h, train/generate.h, model/sampling.h SampleToken):
//   - greedy decoding with the KV cache gives PyTorch's greedy tokens on the fixture models
//     (tests/fixtures/model/generate_*.bin, tools/gen_generate_fixture.py), and the logits of
//     every step to 1e-4;
//   - the KV cache equals the full forward pass over the whole sequence at every step (logits,
//     and a prompt appended in pieces), on the CPU and on the test device (the GPU's path);
//   - Generate end to end on a byte-vocabulary model file: cache and full recompute give the
//     same sampled tokens; the test device the CPU's; the stream hands out every token;
//   - SampleToken: temperature 0 and top-k 1 are greedy, top-p cuts to the nucleus, top-k keeps
//     exactly k candidates, the same seed the same draw.
#include "train/generate.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/generator.h"
#include "model/gpt_params.h"
#include "model/model_file.h"
#include "model/sampling.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "runtime/test_device.h"
#include "tests/model/model_testing.h"

namespace loom {
namespace {

std::vector<int32_t> Ints(const Tensor& t) {
  return std::vector<int32_t>(t.data_as<const int32_t>(), t.data_as<const int32_t>() + t.numel());
}

int32_t Greedy(const Tensor& logits, int64_t row, const GptConfig& c) {
  auto id = SampleToken(logits, row, c.vocab, c.padded_vocab, nullptr, {0.0f, 0, 1.0f}, 1, 0);
  EXPECT_TRUE(id.ok()) << id.status();
  return id.ok() ? *id : -1;
}

class GenerateFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GenerateFixtureTest, GreedyMatchesPyTorch) {
  auto fx = testing::LoadModelFixture(GetParam());
  ASSERT_TRUE(fx.ok()) << fx.status();
  auto want = testing::LoadModelFixture("generate_" + GetParam());
  ASSERT_TRUE(want.ok()) << want.status();
  auto model = testing::ModelFromFixture(*fx);
  ASSERT_TRUE(model.ok()) << model.status();
  const GptConfig& c = (*model)->config();
  auto gen = Generator::Create(model->get(), nullptr, c.max_seq);
  ASSERT_TRUE(gen.ok()) << gen.status();
  const std::vector<int32_t> prompt = Ints(*want->Get("prompt"));
  const std::vector<int32_t> tokens = Ints(*want->Get("tokens"));
  const std::vector<float> logits = *want->Get("logits")->ToFloatVector();
  auto l = (*gen)->Append(prompt);
  std::vector<int32_t> got;
  for (size_t i = 0; i < tokens.size(); ++i) {
    ASSERT_TRUE(l.ok()) << l.status();
    auto row = l->ToFloatVector();
    ASSERT_TRUE(row.ok());
    double worst = 0, scale = 0;
    for (int64_t v = 0; v < c.vocab; ++v) {
      worst = std::max(worst, std::fabs(static_cast<double>((*row)[v]) - logits[i * c.vocab + v]));
      scale = std::max(scale, std::fabs(static_cast<double>(logits[i * c.vocab + v])));
    }
    EXPECT_LE(worst, 1e-4 * scale) << "logits of step " << i;
    got.push_back(Greedy(*l, 0, c));
    l = (*gen)->Append({got.back()});
  }
  EXPECT_EQ(got, tokens);
}

// The cache against the whole sequence's forward pass, step by step; the prompt goes in as
// two pieces so a multi-token append after a cached prefix is covered too.
void ExpectCacheMatchesFullForward(GptModel& model, Device* where) {
  const GptConfig& c = model.config();
  auto gen = Generator::Create(&model, nullptr, c.max_seq);
  ASSERT_TRUE(gen.ok()) << gen.status();
  std::vector<int32_t> seq = {3, 1, 4, 1, 5};
  ASSERT_TRUE((*gen)->Append({seq[0], seq[1]}).ok());
  auto l = (*gen)->Append({seq[2], seq[3], seq[4]});
  while (static_cast<int64_t>(seq.size()) < c.max_seq) {
    ASSERT_TRUE(l.ok()) << l.status();
    const std::vector<float> cached = *l->ToFloatVector();
    const int64_t n = static_cast<int64_t>(seq.size());
    auto full = model.Forward(Tensor::View(seq.data(), Shape{1, n}, DType::kI32, CpuDevice()));
    ASSERT_TRUE(full.ok()) << full.status();
    const std::vector<float> all = *full->ToFloatVector();
    double worst = 0, scale = 0;
    for (int64_t v = 0; v < c.vocab; ++v) {
      const double ref = all[(n - 1) * c.padded_vocab + v];
      worst = std::max(worst, std::fabs(cached[v] - ref));
      scale = std::max(scale, std::fabs(ref));
    }
    EXPECT_LE(worst, 2e-5 * scale) << where->Name() << ": logits after " << n << " tokens";
    seq.push_back(Greedy(*l, 0, c));
    EXPECT_EQ(seq.back(), Greedy(*full, n - 1, c)) << "token " << n;
    l = (*gen)->Append({seq.back()});
  }
  // Past max_len: refused by name.
  ASSERT_TRUE(l.ok()) << l.status();
  l = (*gen)->Append({0});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("exceed the sequence limit"), std::string::npos);
}

TEST_P(GenerateFixtureTest, KvCacheEqualsFullRecompute) {
  auto fx = testing::LoadModelFixture(GetParam());
  ASSERT_TRUE(fx.ok()) << fx.status();
  auto model = testing::ModelFromFixture(*fx);
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectCacheMatchesFullForward(**model, CpuDevice());
  // The same on the test device (memory reached only by copies, ops on streams).
  auto dev = TestDevice(0);
  ASSERT_TRUE(dev.ok()) << dev.status();
  auto on_dev = GptModel::Create((*model)->config(), *dev);
  ASSERT_TRUE(on_dev.ok()) << on_dev.status();
  ASSERT_TRUE((*on_dev)->params().CopyFrom((*model)->params()).ok());
  ExpectCacheMatchesFullForward(**on_dev, *dev);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GenerateFixtureTest, ::testing::Values("gpt2", "llama"));

// A byte-vocabulary model file (random init) for Generate end to end.
std::string WriteByteModel(const std::string& dir, bool llama) {
  GptConfig c;
  c.family = llama ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = llama ? 2 : 4;
  c.hidden = 32;
  c.ffn_hidden = llama ? 64 : 128;
  c.vocab = 257;
  c.padded_vocab = 272;
  c.max_seq = 48;
  c.tied_embeddings = !llama;
  EXPECT_TRUE(c.Validate().ok());
  const ParamTable table = GptParamLayout(c);
  Tensor p = *Tensor::Zeros(Shape{table.total()}, DType::kF32, CpuDevice());
  EXPECT_TRUE(InitParams(table, 11, p).ok());
  const std::string path = dir + (llama ? "/llama.bin" : "/gpt2.bin");
  EXPECT_TRUE(WriteLoomModelFile(path, c, *p.ToFloatVector()).ok());
  return path;
}

TEST(GenerateTest, CacheRecomputeAndTestDeviceAgree) {
  const testing::ScopedTempDir tmp("generate");
  World* world = World::Self();
  for (bool llama : {false, true}) {
    GenerateOptions o;
    o.from = WriteByteModel(tmp.path(), llama);
    o.prompt = "Q: what is it?\nA:";
    o.max_new_tokens = 20;
    o.sampling = {0.9f, 20, 0.95f};
    o.seed = 5;
    o.stop_at_eot = false;
    std::string streamed;
    auto cached = Generate(o, world, [&](int32_t, const std::string& t) { streamed += t; });
    ASSERT_TRUE(cached.ok()) << cached.status();
    EXPECT_EQ(cached->new_ids.size(), 20u);
    EXPECT_EQ(streamed.size(), 20u);  // one byte per token
    o.full_recompute = true;
    auto full = Generate(o, world);
    ASSERT_TRUE(full.ok()) << full.status();
    EXPECT_EQ(cached->new_ids, full->new_ids) << (llama ? "LLaMA" : "GPT-2");
    o.full_recompute = false;
    o.backend = "test";
    auto dev = Generate(o, world);
    ASSERT_TRUE(dev.ok()) << dev.status();
    EXPECT_EQ(cached->new_ids, dev->new_ids);
    EXPECT_EQ(cached->last_logits, dev->last_logits);
    // A different seed draws differently.
    o.backend = "cpu";
    o.seed = 6;
    auto other = Generate(o, world);
    ASSERT_TRUE(other.ok());
    EXPECT_NE(cached->new_ids, other->new_ids);
  }
  GenerateOptions bad;
  bad.from = tmp.path() + "/gpt2.bin";
  bad.prompt = std::string(40, 'x');
  bad.max_new_tokens = 20;
  auto r = Generate(bad, world);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exceed the model's max_seq of 48"), std::string::npos)
      << r.status();
}

TEST(SampleTokenTest, GreedyTopKTopP) {
  // Logits over a vocabulary of 6 (padded to 8): ids 2 > 4 > 0 > the rest.
  std::vector<float> l = {1.0f, -1.0f, 3.0f, -2.0f, 2.5f, -3.0f, 9.0f, 9.0f};
  Tensor t = Tensor::FromVector(l, Shape{1, 8});
  for (uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_EQ(*SampleToken(t, 0, 6, 8, nullptr, {0.0f, 0, 1.0f}, seed, 0), 2);
    EXPECT_EQ(*SampleToken(t, 0, 6, 8, nullptr, {1.0f, 1, 1.0f}, seed, 0), 2);
    EXPECT_EQ(*SampleToken(t, 0, 6, 8, nullptr, {1.0f, 0, 0.01f}, seed, 0), 2);
  }
  std::set<int32_t> top3, nucleus;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    top3.insert(*SampleToken(t, 0, 6, 8, nullptr, {5.0f, 3, 1.0f}, seed, 0));
    // p(2) ~ 0.58, p(4) ~ 0.35 at temperature 1: top_p 0.9 keeps exactly {2, 4}.
    nucleus.insert(*SampleToken(t, 0, 6, 8, nullptr, {1.0f, 0, 0.9f}, seed, 0));
  }
  EXPECT_EQ(top3, (std::set<int32_t>{0, 2, 4}));
  EXPECT_EQ(nucleus, (std::set<int32_t>{2, 4}));
  EXPECT_EQ(*SampleToken(t, 0, 6, 8, nullptr, {1.0f, 0, 1.0f}, 7, 3),
            *SampleToken(t, 0, 6, 8, nullptr, {1.0f, 0, 1.0f}, 7, 3));
}

}  // namespace
}  // namespace loom
