// Hugging Face model directories against the transformers library (tools/gen_hf_fixtures.py
// wrote tests/fixtures/hf/ with transformers' own save_pretrained, and its float64 logits):
//   - loom reads GPT2LMHeadModel (f32; bf16 in shards) and LlamaForCausalLM (f32, bf16; f16 in
//     shards), and its logits and loss at step 0 match transformers' to 1e-5, unpadded and
//     padded to the job's vocabulary (padding rows zero);
//   - loom's export writes the very tensors transformers wrote (names, shapes, dtypes, bytes,
//     bf16 / f16 rounding), one file or sharded with an index, and reads them back;
//   - each malformed directory is refused naming the file and the field or tensor.
#include "model/hf_format.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "model/gpt.h"
#include "model/hf_safetensors.h"
#include "model/model_file.h"
#include "runtime/files.h"
#include "tests/model/model_testing.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::Fixture;

std::string HfPath(const std::string& name) {
  return testing::SourceDir() + "/tests/fixtures/hf/" + name;
}

// The logits' float32 rounding through a two-layer model stays near 1e-6 of their scale.
constexpr double kTol = 1e-5;

// Logits [B*T, >= V] against the fixture's [B*T, V]: the first V columns, element-wise within
// kTol * (|want| + max|want|).
void ExpectLogits(const std::vector<float>& got, int64_t got_cols, const Fixture& fx) {
  auto want = fx.Get("logits");
  ASSERT_TRUE(want.ok()) << want.status();
  const int64_t rows = want->dim(0), v = want->dim(1);
  ASSERT_EQ(static_cast<int64_t>(got.size()), rows * got_cols);
  const float* w = want->data_as<float>();
  double scale = 0;
  for (int64_t i = 0; i < rows * v; ++i) scale = std::max(scale, std::fabs(double{w[i]}));
  int bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < v; ++c) {
      const double g = got[r * got_cols + c], x = w[r * v + c];
      if (std::fabs(g - x) > kTol * (std::fabs(x) + scale) && bad++ < 5) {
        ADD_FAILURE() << "logit [" << r << ", " << c << "]: loom " << g << ", transformers " << x;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "of " << rows * v << " logits";
}

// The model of `config` holding `params`, on the CPU: its logits and its loss on the fixture's
// batch.
void ExpectMatchesTransformers(const GptConfig& config, const std::vector<float>& params,
                               const Fixture& fx) {
  auto model = GptModel::Create(config, CpuDevice());
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE((*model)->params().CopyFromFloats(params).ok());
  auto tokens = fx.Get("tokens");
  auto targets = fx.Get("targets");
  ASSERT_TRUE(tokens.ok() && targets.ok());
  auto logits = (*model)->Forward(*tokens);
  ASSERT_TRUE(logits.ok()) << logits.status();
  auto l = logits->ToFloatVector();
  ASSERT_TRUE(l.ok());
  ExpectLogits(*l, config.padded_vocab, fx);
  ASSERT_TRUE((*model)->ZeroGrads().ok());
  auto loss = (*model)->ForwardBackward(*tokens, *targets, 1.0f);
  ASSERT_TRUE(loss.ok()) << loss.status();
  auto want = fx.Float("loss");
  ASSERT_TRUE(want.ok());
  EXPECT_NEAR(*loss, *want, kTol * *want);
}

class HfFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto fx = Fixture::LoadFile(HfPath(GetParam() + ".bin"));
    ASSERT_TRUE(fx.ok()) << fx.status();
    fx_ = std::move(*fx);
    auto c = testing::ConfigFromFixture(fx_);
    ASSERT_TRUE(c.ok()) << c.status();
    want_ = *c;
  }
  std::string Dir() const { return HfPath(GetParam()); }
  Fixture fx_;
  GptConfig want_;
};

TEST_P(HfFixtureTest, ReadsTheModelTransformersDescribes) {
  auto reader = ModelFileReader::Open(Dir());
  ASSERT_TRUE(reader.ok()) << reader.status();
  const GptConfig& c = (*reader)->config();
  const std::vector<std::string> diffs =
      GptConfigDifferences(want_, c, "fixture", "reader", /*with_padding=*/true,
                           /*with_numerics=*/true);
  EXPECT_TRUE(diffs.empty()) << diffs.front();
  EXPECT_TRUE(
      absl::StrContains((*reader)->format(), c.is_llama() ? "LlamaForCausalLM" : "GPT2LMHeadModel"))
      << (*reader)->format();
}

TEST_P(HfFixtureTest, LogitsAndLossMatchTransformers) {
  auto w = ReadModelFile(Dir());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->config.padded_vocab, want_.vocab);
  ExpectMatchesTransformers(w->config, w->params, fx_);
}

// Read into a job's model padded to 128 and to 256 rows: the real rows as stored, the padding
// zero, the same logits and loss.
TEST_P(HfFixtureTest, PaddedToTheJobsVocabulary) {
  auto reader = ModelFileReader::Open(Dir());
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto whole = ReadModelFile(Dir());
  ASSERT_TRUE(whole.ok()) << whole.status();
  for (int64_t padded : {128, 256}) {
    GptConfig job = want_;
    job.padded_vocab = padded;
    const ParamTable layout = GptParamLayout(job);
    auto p = ReadModelSlices(**reader, job, layout);
    ASSERT_TRUE(p.ok()) << p.status();
    const ParamTable unpadded = GptParamLayout(whole->config);
    for (const ParamSpec& s : layout.specs()) {
      const ParamSpec* u = *unpadded.Find(s.name);
      const int64_t real = u->numel();
      EXPECT_EQ(std::memcmp(p->data() + s.offset, whole->params.data() + u->offset, real * 4), 0)
          << s.name;
      EXPECT_TRUE(std::all_of(p->begin() + s.offset + real, p->begin() + s.offset + s.numel(),
                              [](float x) { return x == 0.0f; }))
          << s.name << ": padding rows not zero";
    }
    ExpectMatchesTransformers(job, *p, fx_);
  }
}

INSTANTIATE_TEST_SUITE_P(Transformers, HfFixtureTest,
                         ::testing::Values("gpt2_f32", "gpt2_bf16_sharded", "llama_f32",
                                           "llama_bf16", "llama_f16_sharded"));

// ---- export -----------------------------------------------------------------------------------

struct StoredTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Every tensor of every safetensors file in `dir`, by name.
std::map<std::string, StoredTensor> TensorsIn(const std::string& dir) {
  std::map<std::string, StoredTensor> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    auto f = MappedFile::Open(e.path().string());
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok()) continue;
    auto tensors = ParseSafetensors(*f);
    EXPECT_TRUE(tensors.ok()) << tensors.status();
    if (!tensors.ok()) continue;
    for (const auto& [name, t] : *tensors) {
      EXPECT_FALSE(out.count(name)) << name << " stored twice in " << dir;
      out[name] = {t.dtype, t.shape, std::string(reinterpret_cast<const char*>(t.data), t.bytes)};
    }
  }
  return out;
}

int CountFiles(const std::string& dir, const std::string& suffix) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    n += absl::EndsWith(e.path().filename().string(), suffix);
  }
  return n;
}

struct ExportCase {
  std::string from, like;  // the float32 fixture exported, the fixture it must equal
  DType dtype;
  int64_t shard_bytes;
};

void PrintTo(const ExportCase& c, std::ostream* os) { *os << c.from << " as " << c.like; }

class HfExportTest : public ::testing::TestWithParam<ExportCase> {};

// The float32 model exported as `dtype` holds exactly the tensors transformers saved for that
// dtype (rounded by PyTorch), under the same names and shapes; and it reads back.
TEST_P(HfExportTest, WritesWhatTransformersWrote) {
  const ExportCase& ec = GetParam();
  auto w = ReadModelFile(HfPath(ec.from));
  ASSERT_TRUE(w.ok()) << w.status();
  const testing::ScopedTempDir tmp("hf_export");
  const std::string out = tmp.path() + "/model";
  ASSERT_TRUE(WriteHfModelDir(out, w->config, w->params, {ec.dtype, ec.shard_bytes}).ok());
  const auto got = TensorsIn(out), want = TensorsIn(HfPath(ec.like));
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) {
    auto it = got.find(name);
    ASSERT_TRUE(it != got.end()) << "the export lacks " << name;
    EXPECT_EQ(it->second.dtype, t.dtype) << name;
    EXPECT_EQ(it->second.shape, t.shape) << name;
    EXPECT_TRUE(it->second.bytes == t.bytes) << name << " holds other values";
  }
  EXPECT_EQ(fs::exists(out + "/model.safetensors.index.json"), ec.shard_bytes > 0);
  if (ec.shard_bytes > 0) {
    EXPECT_GE(CountFiles(out, ".safetensors"), 2);
  }
  auto back = ReadModelFile(out);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(GptConfigDifferences(back->config, w->config, "a", "b", true, true).empty());
  if (ec.dtype == DType::kF32) {
    EXPECT_EQ(back->params, w->params);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Transformers, HfExportTest,
    ::testing::Values(ExportCase{"gpt2_f32", "gpt2_f32", DType::kF32, 0},
                      ExportCase{"gpt2_f32", "gpt2_bf16_sharded", DType::kBF16, 20000},
                      ExportCase{"llama_f32", "llama_f32", DType::kF32, 0},
                      ExportCase{"llama_f32", "llama_f16_sharded", DType::kF16, 20000},
                      ExportCase{"llama_f32", "llama_bf16", DType::kBF16, 0}),
    [](const auto& info) { return absl::StrCat(info.param.from, "_as_", info.param.like); });

// A padded loom model (the PyTorch golden fixture, 128 rows for vocab 64) exports unpadded and
// reads back padded again with the same rows; a second export into the same directory leaves
// one model there (the shards and index of the first are gone).
TEST(HfExport, DropsPaddingAndReplacesAnEarlierExport) {
  auto w = ReadModelFile(testing::ModelFixturePath("llama.loom.bin"));
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->config.padded_vocab, 128);
  const testing::ScopedTempDir tmp("hf_export_pad");
  const std::string out = tmp.path() + "/m";
  ASSERT_TRUE(WriteHfModelDir(out, w->config, w->params, {DType::kF32, 10000}).ok());
  EXPECT_GE(CountFiles(out, ".safetensors"), 3);
  ASSERT_TRUE(WriteHfModelDir(out, w->config, w->params, {DType::kF32, 0}).ok());
  EXPECT_EQ(CountFiles(out, ".safetensors"), 1);
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
  const auto tensors = TensorsIn(out);
  EXPECT_EQ(tensors.at("model.embed_tokens.weight").shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(tensors.at("lm_head.weight").shape, (std::vector<int64_t>{64, 32}));
  auto reader = ModelFileReader::Open(out);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto back = ReadModelSlices(**reader, w->config, GptParamLayout(w->config));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, w->params);
}

// The head's other choice for each family: a LLaMA tied to its embedding stores no lm_head
// (tie_word_embeddings true), a GPT-2 with an untied head stores it; both read back as written.
TEST(HfExport, TiedLlamaAndUntiedGpt2) {
  const testing::ScopedTempDir tmp("hf_export_heads");
  for (bool llama : {true, false}) {
    GptConfig c;
    c.family = llama ? ModelFamily::kLlama : ModelFamily::kGpt2;
    c.layers = 1;
    c.heads = 2;
    c.kv_heads = llama ? 1 : 2;
    c.hidden = 8;
    c.ffn_hidden = llama ? 12 : 32;
    c.vocab = 10;
    c.padded_vocab = 16;
    c.max_seq = 4;
    c.tied_embeddings = llama;
    const ParamTable layout = GptParamLayout(c);
    std::vector<float> p(layout.total());
    for (size_t i = 0; i < p.size(); ++i) p[i] = 0.01f * static_cast<float>(i % 101);
    for (const ParamSpec& s : layout.specs()) {
      if (s.zero_rows_from >= 0) {
        std::fill(p.begin() + s.offset + s.zero_rows_from * c.hidden,
                  p.begin() + s.offset + s.numel(), 0.0f);
      }
    }
    const std::string out = tmp.path() + (llama ? "/llama" : "/gpt2");
    ASSERT_TRUE(WriteHfModelDir(out, c, p, {}).ok());
    EXPECT_EQ(TensorsIn(out).count("lm_head.weight"), llama ? 0u : 1u);
    auto config = ReadFile(out + "/config.json");
    ASSERT_TRUE(config.ok());
    EXPECT_TRUE(absl::StrContains(
        *config, llama ? "\"tie_word_embeddings\": true" : "\"tie_word_embeddings\": false"))
        << *config;
    auto reader = ModelFileReader::Open(out);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ((*reader)->config().tied_embeddings, llama);
    auto back = ReadModelSlices(**reader, c, layout);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, p) << (llama ? "LLaMA" : "GPT-2");
  }
}

// ---- refusals ---------------------------------------------------------------------------------

class HfRefusalTest : public ::testing::Test {
 protected:
  // A copy of fixture `name` in the temp dir, its config.json edited by `replace`.
  std::string Copy(const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& replace = {}) {
    const std::string dir = tmp_.path() + "/" + name + std::to_string(copies_++);
    fs::copy(HfPath(name), dir);
    auto text = ReadFile(dir + "/config.json");
    EXPECT_TRUE(text.ok());
    for (const auto& [from, to] : replace) {
      EXPECT_TRUE(absl::StrContains(*text, from)) << from;
    }
    EXPECT_TRUE(AtomicWriteFile(dir + "/config.json", absl::StrReplaceAll(*text, replace)).ok());
    return dir;
  }
  // The reader's error for `dir`, which must name every one of `parts`.
  void ExpectRefused(const std::string& dir, const std::vector<std::string>& parts) {
    auto r = ModelFileReader::Open(dir);
    ASSERT_FALSE(r.ok()) << dir << " was accepted";
    for (const std::string& p : parts) {
      EXPECT_TRUE(absl::StrContains(r.status().message(), p)) << r.status() << "\nlacks: " << p;
    }
  }
  // Rewrites dir/model.safetensors with `edit` applied to its tensors.
  void EditTensors(const std::string& dir,
                   const std::function<void(std::vector<SafetensorsOut>*)>& edit) {
    const std::string path = dir + "/model.safetensors";
    std::vector<SafetensorsOut> tensors;
    {
      auto f = MappedFile::Open(path);
      ASSERT_TRUE(f.ok());
      auto parsed = ParseSafetensors(*f);
      ASSERT_TRUE(parsed.ok());
      for (const auto& [name, t] : *parsed) {
        const float* v = reinterpret_cast<const float*>(t.data);
        tensors.push_back({name, t.shape, std::vector<float>(v, v + t.bytes / 4)});
      }
    }
    edit(&tensors);
    ASSERT_TRUE(AtomicWriteFile(path, EncodeSafetensors(tensors, DType::kF32)).ok());
  }
  testing::ScopedTempDir tmp_{"hf_refusals"};
  int copies_ = 0;
};

TEST_F(HfRefusalTest, UnknownArchitecture) {
  const std::string dir =
      Copy("gpt2_f32", {{"\"model_type\": \"gpt2\"", "\"model_type\": \"bert\""},
                        {"GPT2LMHeadModel", "BertForMaskedLM"}});
  ExpectRefused(dir, {dir + "/config.json", "model_type \"bert\"", "BertForMaskedLM",
                      "gpt2 (GPT2LMHeadModel) and llama (LlamaForCausalLM)"});
}

TEST_F(HfRefusalTest, SettingsLoomDoesNotCompute) {
  std::string dir = Copy(
      "llama_f32",
      {{"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"}});
  ExpectRefused(dir, {dir + "/config.json", "rope_scaling"});
  dir = Copy("llama_f32", {{"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""}});
  ExpectRefused(dir, {"hidden_act \"gelu\""});
  dir = Copy("gpt2_f32",
             {{"\"activation_function\": \"gelu_new\"", "\"activation_function\": \"relu\""}});
  ExpectRefused(dir, {"activation_function \"relu\""});
  dir = Copy("gpt2_f32", {{"\"n_head\": 4", "\"n_head\": 5"}});
  ExpectRefused(dir,
                {dir + "/config.json", "model.hidden (32) is not divisible by model.heads (5)"});
}

TEST_F(HfRefusalTest, ShapeMismatchNamesFileTensorAndShapes) {
  // config.json says 4 kv heads; the stored k_proj holds 2 (16 rows).
  const std::string dir =
      Copy("llama_f32", {{"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4"}});
  ExpectRefused(dir, {dir + "/model.safetensors", "model.layers.0.self_attn.k_proj.weight",
                      "[16, 32]", "[32, 32]"});
}

TEST_F(HfRefusalTest, MissingAndExtraTensors) {
  std::string dir = Copy("gpt2_f32");
  EditTensors(dir, [](std::vector<SafetensorsOut>* t) {
    t->erase(std::remove_if(
                 t->begin(), t->end(),
                 [](const SafetensorsOut& x) { return x.name == "transformer.h.1.mlp.c_fc.bias"; }),
             t->end());
  });
  ExpectRefused(dir, {dir + "/model.safetensors", "no tensor transformer.h.1.mlp.c_fc.bias",
                      "blocks.1.mlp.fc.bias"});
  dir = Copy("gpt2_f32");
  EditTensors(dir, [](std::vector<SafetensorsOut>* t) {
    t->push_back({"transformer.h.2.ln_1.weight", {32}, std::vector<float>(32, 1.0f)});
  });
  ExpectRefused(dir, {dir + "/model.safetensors", "transformer.h.2.ln_1.weight", "no place"});
  // A causal-mask buffer some GPT-2 checkpoints carry is no parameter: accepted.
  dir = Copy("gpt2_f32");
  EditTensors(dir, [](std::vector<SafetensorsOut>* t) {
    t->push_back({"transformer.h.0.attn.bias", {1, 1, 4, 4}, std::vector<float>(16, 1.0f)});
  });
  EXPECT_TRUE(ModelFileReader::Open(dir).ok());
}

// Checkpoints of the bare GPT2Model (as the released openai-community/gpt2 files) name their
// tensors without "transformer." and carry the causal-mask buffers: the same weights. A job
// with a shorter context reads the first position rows.
TEST_F(HfRefusalTest, BareModelNamesAndAShorterContext) {
  const std::string dir = Copy("gpt2_f32");
  EditTensors(dir, [](std::vector<SafetensorsOut>* t) {
    for (SafetensorsOut& x : *t) x.name = x.name.substr(std::string("transformer.").size());
    t->push_back({"h.1.attn.bias", {1, 1, 16, 16}, std::vector<float>(256, 1.0f)});
  });
  auto bare = ReadModelFile(dir);
  ASSERT_TRUE(bare.ok()) << bare.status();
  auto want = ReadModelFile(HfPath("gpt2_f32"));
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(bare->params, want->params);

  auto reader = ModelFileReader::Open(dir);
  ASSERT_TRUE(reader.ok());
  GptConfig job = want->config;
  job.max_seq = 8;
  const ParamTable layout = GptParamLayout(job);
  auto p = ReadModelSlices(**reader, job, layout);
  ASSERT_TRUE(p.ok()) << p.status();
  const ParamSpec* wpe = *layout.Find("wpe.weight");
  const ParamTable whole = GptParamLayout(want->config);  // outlives the pointer into it
  const ParamSpec* whole_wpe = *whole.Find("wpe.weight");
  EXPECT_TRUE(std::equal(p->begin() + wpe->offset, p->begin() + wpe->offset + wpe->numel(),
                         want->params.begin() + whole_wpe->offset));
  job.max_seq = 32;
  auto longer = ReadModelSlices(**reader, job, GptParamLayout(job));
  ASSERT_FALSE(longer.ok());
  EXPECT_TRUE(
      absl::StrContains(longer.status().message(), "model.max_seq: job has 32, file has 16"))
      << longer.status();
}

TEST_F(HfRefusalTest, BrokenFilesAndIndex) {
  std::string dir = Copy("llama_f32");
  auto bytes = ReadFile(dir + "/model.safetensors");
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(
      AtomicWriteFile(dir + "/model.safetensors", bytes->substr(0, bytes->size() - 100)).ok());
  ExpectRefused(dir, {dir + "/model.safetensors", "outside the file"});

  dir = Copy("llama_f16_sharded");
  auto index = ReadFile(dir + "/model.safetensors.index.json");
  ASSERT_TRUE(index.ok());
  ASSERT_TRUE(AtomicWriteFile(dir + "/model.safetensors.index.json",
                              absl::StrReplaceAll(*index, {{"model-00002-of-00002", "../x"}}))
                  .ok());
  ExpectRefused(dir, {dir + "/model.safetensors.index.json", "no plain file"});

  dir = Copy("llama_f32");
  fs::remove(dir + "/model.safetensors");
  ExpectRefused(dir, {dir, "neither model.safetensors nor model.safetensors.index.json"});

  dir = Copy("llama_f32");
  ASSERT_TRUE(AtomicWriteFile(dir + "/config.json", "{ not json").ok());
  ExpectRefused(dir, {dir + "/config.json", "not a JSON object"});
}

// A non-finite weight in a 16-bit file is refused naming the file and both names.
TEST_F(HfRefusalTest, NonFiniteWeight) {
  const std::string dir = Copy("llama_f32");
  EditTensors(dir, [](std::vector<SafetensorsOut>* t) {
    for (SafetensorsOut& x : *t) {
      if (x.name == "model.layers.1.mlp.up_proj.weight") x.values[5] = NAN;
    }
  });
  auto w = ReadModelFile(dir);
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(absl::StrContains(w.status().message(), dir)) << w.status();
  EXPECT_TRUE(absl::StrContains(w.status().message(), "tensor blocks.1.mlp.gate_up.weight"))
      << w.status();
  EXPECT_TRUE(absl::StrContains(w.status().message(), "model.layers.1.mlp.up_proj.weight"))
      << w.status();
}

}  // namespace
}  // namespace loom
