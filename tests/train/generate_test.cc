// Generation (model/generator.h, train/generate.h, model/sampling.h SampleToken):
//   - greedy decoding with the KV cache gives PyTorch's greedy tokens on the fixture models
//     (tests/fixtures/model/generate_*.bin, tools/gen_generate_fixture.py), and the logits of
//     every step to 1e-4;
//   - the KV cache equals the full forward pass over the whole sequence at every step (logits,
//     and a prompt appended in pieces), on the CPU and on the test device (the GPU's path);
//   - Generate end to end on a byte-vocabulary model file: cache and full recompute give the
//     same sampled tokens; the test device the CPU's; the stream hands out every token;
//   - with real tokenizers (tests/fixtures/hf/generate_tok.tsv, tools/gen_generate_tok_fixture.py):
//     models written by transformers, prompts encoded by `tokenizers` / sentencepiece, greedy
//     ids of transformers' generate and the decoded text; the tokenizer given by --tokenizer or
//     found inside the Hugging Face directory; a vocabulary that does not fit refused naming
//     both; generation stops at the tokenizer's end-of-text, and with a template at its
//     end-of-turn marker;
//   - SampleToken: temperature 0 and top-k 1 are greedy, top-p cuts to the nucleus, top-k keeps
//     exactly k candidates, the same seed the same draw.
#include "train/generate.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/text_stream.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "model/generator.h"
#include "model/gpt_params.h"
#include "model/model_file.h"
#include "model/sampling.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "runtime/test_device.h"
#include "tests/model/model_testing.h"
#include "tests/temp_dir.h"

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
    int calls = 0;
    auto cached = Generate(o, world, [&](int32_t id, const std::string& t) {
      calls += id >= 0;
      streamed += t;
    });
    ASSERT_TRUE(cached.ok()) << cached.status();
    EXPECT_EQ(cached->new_ids.size(), 20u);
    EXPECT_EQ(calls, 20);  // one call per token (and one more for an unfinished character)
    EXPECT_EQ(streamed, cached->text);
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

// One line of tests/fixtures/hf/generate_tok.tsv.
struct TokCase {
  std::string name, model_dir, tokenizer, prompt, text;
  std::vector<int32_t> prompt_ids, new_ids;
};

std::string Unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::vector<int32_t> IdList(const std::string& s) {
  std::vector<int32_t> ids;
  for (const auto& w : absl::StrSplit(s, ' ', absl::SkipEmpty())) {
    int32_t v = -1;
    EXPECT_TRUE(absl::SimpleAtoi(w, &v));
    ids.push_back(v);
  }
  return ids;
}

std::vector<TokCase> ReadTokCases() {
  const std::string fixtures = testing::SourceDir() + "/tests/fixtures/";
  std::ifstream in(fixtures + "hf/generate_tok.tsv");
  std::vector<TokCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> c = absl::StrSplit(line, '\t');
    if (c.size() != 7) continue;
    cases.push_back({c[0], fixtures + c[1], fixtures + c[2], Unhex(c[3]), Unhex(c[6]), IdList(c[4]),
                     IdList(c[5])});
  }
  EXPECT_EQ(cases.size(), 2u);
  return cases;
}

TEST(GenerateTokenizerTest, GreedyMatchesTransformersWithItsTokenizer) {
  const testing::ScopedTempDir tmp("generate_tok");
  namespace fs = std::filesystem;
  for (const TokCase& c : ReadTokCases()) {
    if (c.tokenizer.size() > 6 && c.tokenizer.substr(c.tokenizer.size() - 6) == ".model" &&
        !SentencePieceAvailable()) {
      std::cerr << "skipping " << c.name << ": no SentencePiece in this build\n";
      continue;
    }
    GenerateOptions o;
    o.from = c.model_dir;
    o.tokenizer = c.tokenizer;
    o.prompt = c.prompt;
    o.max_new_tokens = static_cast<int>(c.new_ids.size()) + 1;
    o.sampling = {0.0f, 0, 1.0f};
    std::string streamed;
    auto r = Generate(o, World::Self(), [&](int32_t, const std::string& t) {
      // Only whole characters are handed out (a lossy UTF-8 round trip changes nothing).
      size_t used;
      EXPECT_EQ(LossyUtf8(t, false, &used), t) << c.name;
      streamed += t;
    });
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    EXPECT_EQ(r->prompt_ids, c.prompt_ids) << c.name;
    // max_new_tokens is one more than transformers made: it stopped at end-of-text or its limit.
    std::vector<int32_t> got = r->new_ids;
    if (got.size() > c.new_ids.size()) got.resize(c.new_ids.size());
    EXPECT_EQ(got, c.new_ids) << c.name;
    if (r->new_ids.size() == c.new_ids.size()) {
      EXPECT_EQ(r->text, c.text) << c.name;
      EXPECT_EQ(streamed, c.text) << c.name;
    }

    // The tokenizer found inside the Hugging Face directory, under its usual name.
    const std::string dir = tmp.path() + "/" + c.name;
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) {
      fs::copy_file(c.model_dir + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
    }
    const bool sp = c.tokenizer.substr(c.tokenizer.size() - 6) == ".model";
    fs::copy_file(c.tokenizer, dir + (sp ? "/tokenizer.model" : "/tokenizer.json"),
                  fs::copy_options::overwrite_existing);
    o.from = dir;
    o.tokenizer.clear();
    auto found = Generate(o, World::Self());
    ASSERT_TRUE(found.ok()) << c.name << ": " << found.status();
    EXPECT_EQ(found->tokenizer, dir + (sp ? "/tokenizer.model" : "/tokenizer.json"));
    EXPECT_EQ(found->new_ids, r->new_ids) << c.name;
  }
}

TEST(GenerateTokenizerTest, VocabularyMismatchIsRefused) {
  const std::string fixtures = testing::SourceDir() + "/tests/fixtures/";
  GenerateOptions o;
  o.prompt = "hi";
  // A model of 1004 ids with the byte tokenizer (none inside the directory).
  o.from = fixtures + "hf/gpt2_tok";
  auto r = Generate(o, World::Self());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("has 1004 ids, the byte tokenizer 257"), std::string::npos)
      << r.status();
  // A model of 64 ids with a tokenizer of 1004.
  o.from = fixtures + "hf/gpt2_f32";
  o.tokenizer = fixtures + "tokenizer/gpt2.tokenizer.json";
  r = Generate(o, World::Self());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("has 1004 ids but the model"), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("vocabulary of 64"), std::string::npos) << r.status();
}

// A model whose every next token is the BPE tokenizer's <|endoftext|> (1003, not the byte
// tokenizer's 256): the final norm's output is a constant vector v, and the tied head's row
// 1003 is 10 v. Generation stops at once; with stop_at_eot off it goes on.
TEST(GenerateTokenizerTest, StopsAtTheTokenizersEndOfText) {
  const testing::ScopedTempDir tmp("generate_eot");
  auto tok = LoadTokenizer(testing::SourceDir() + "/tests/fixtures/tokenizer/gpt2.tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  ASSERT_EQ((*tok)->eot(), 1003);
  GptConfig c;
  c.layers = 1;
  c.heads = 2;
  c.kv_heads = 2;
  c.hidden = 16;
  c.ffn_hidden = 32;
  c.vocab = 1004;
  c.padded_vocab = 1008;
  c.max_seq = 32;
  ASSERT_TRUE(c.Validate().ok());
  const ParamTable table = GptParamLayout(c);
  Tensor p = *Tensor::Zeros(Shape{table.total()}, DType::kF32, CpuDevice());
  ASSERT_TRUE(InitParams(table, 3, p).ok());
  std::vector<float> w = *p.ToFloatVector();
  const ParamSpec* lnw = *table.Find("ln_f.weight");
  const ParamSpec* lnb = *table.Find("ln_f.bias");
  const ParamSpec* wte = *table.Find("wte.weight");
  for (int64_t i = 0; i < c.hidden; ++i) {
    const float v = (i % 2 == 0 ? 1.0f : -1.0f);
    w[lnw->offset + i] = 0;
    w[lnb->offset + i] = v;
    w[wte->offset + 1003 * c.hidden + i] = 10 * v;
  }
  const std::string path = tmp.path() + "/eot.bin";
  ASSERT_TRUE(WriteLoomModelFile(path, c, w).ok());
  GenerateOptions o;
  o.from = path;
  o.tokenizer = testing::SourceDir() + "/tests/fixtures/tokenizer/gpt2.tokenizer.json";
  o.prompt = "Hello";
  o.max_new_tokens = 5;
  o.sampling = {0.0f, 0, 1.0f};
  auto r = Generate(o, World::Self());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->new_ids.empty());
  EXPECT_EQ(r->prompt_ids, (*tok)->Encode("Hello"));
  o.stop_at_eot = false;
  r = Generate(o, World::Self());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_ids, std::vector<int32_t>(5, 1003));
  EXPECT_EQ(r->text, "<|endoftext|><|endoftext|><|endoftext|><|endoftext|><|endoftext|>");
}

// A chat template's end-of-turn marker (the assistant suffix less trailing whitespace) ends the
// turn, marker printed, even where the model never emits end-of-text; --no-stop goes on.
TEST(GenerateTest, StopsAtTheTemplatesEndOfTurn) {
  const testing::ScopedTempDir tmp("generate_end_of_turn");
  GptConfig c;
  c.layers = 1;
  c.heads = 2;
  c.kv_heads = 2;
  c.hidden = 16;
  c.ffn_hidden = 32;
  c.vocab = 257;  // the byte tokenizer's
  c.padded_vocab = 264;
  c.max_seq = 64;
  ASSERT_TRUE(c.Validate().ok());
  const ParamTable table = GptParamLayout(c);
  Tensor p = *Tensor::Zeros(Shape{table.total()}, DType::kF32, CpuDevice());
  ASSERT_TRUE(InitParams(table, 3, p).ok());
  std::vector<float> w = *p.ToFloatVector();
  const ParamSpec* lnw = *table.Find("ln_f.weight");
  const ParamSpec* lnb = *table.Find("ln_f.bias");
  const ParamSpec* wte = *table.Find("wte.weight");
  for (int64_t i = 0; i < c.hidden; ++i) {  // every next token is 'x'
    const float v = (i % 2 == 0 ? 1.0f : -1.0f);
    w[lnw->offset + i] = 0;
    w[lnb->offset + i] = v;
    w[wte->offset + 'x' * c.hidden + i] = 10 * v;
  }
  const std::string path = tmp.path() + "/x.bin";
  ASSERT_TRUE(WriteLoomModelFile(path, c, w).ok());
  const std::string tmpl = tmp.path() + "/sft_template.textproto";
  std::ofstream(tmpl) << "user_prefix: \"Q: \" user_suffix: \"\\n\" assistant_prefix: \"A: \" "
                         "assistant_suffix: \"xxx\\n\"\n";
  GenerateOptions o;
  o.from = path;
  o.template_name = tmpl;
  o.prompt = "Why?";
  o.max_new_tokens = 8;
  o.sampling = {0.0f, 0, 1.0f};
  auto r = Generate(o, World::Self());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "xxx");
  EXPECT_EQ(r->new_ids.size(), 3u);
  o.stop_at_eot = false;
  r = Generate(o, World::Self());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, std::string(8, 'x'));
  o.stop_at_eot = true;
  o.template_name = "qa";  // suffix "\n": no marker, so only end-of-text ends the turn
  r = Generate(o, World::Self());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, std::string(8, 'x'));
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
