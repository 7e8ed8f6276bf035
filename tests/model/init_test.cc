// ParamTable and InitParams: the flat layout is contiguous and flags decay on exactly the 2-D
// weights; the init is a pure function of (seed, name, element), has GPT-2's statistics
// (std 0.02, residual projections 0.02 / sqrt(2 * layers), norm weights 1, biases 0) and
// leaves padded vocab rows zero.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "model/gpt_config.h"
#include "model/gpt_params.h"
#include "runtime/tensor.h"

namespace loom {
namespace {

GptConfig Gpt2(int layers) {
  GptConfig c;
  c.family = ModelFamily::kGpt2;
  c.layers = layers;
  c.heads = 4;
  c.kv_heads = 4;
  c.hidden = 64;
  c.ffn_hidden = 256;
  c.vocab = 250;
  c.padded_vocab = 256;
  c.max_seq = 64;
  c.tied_embeddings = true;
  return c;
}

GptConfig Llama() {
  GptConfig c;
  c.family = ModelFamily::kLlama;
  c.layers = 3;
  c.heads = 4;
  c.kv_heads = 2;
  c.hidden = 64;
  c.ffn_hidden = 160;
  c.vocab = 250;
  c.padded_vocab = 256;
  c.max_seq = 64;
  c.tied_embeddings = false;
  return c;
}

std::vector<float> Init(const ParamTable& layout, uint64_t seed) {
  auto t = Tensor::Zeros(Shape{layout.total()}, DType::kF32, CpuDevice());
  EXPECT_TRUE(t.ok());
  absl::Status s = InitParams(layout, seed, *t);
  EXPECT_TRUE(s.ok()) << s;
  return *t->ToFloatVector();
}

TEST(ParamTable, ContiguousAndDecayOnTwoDimensionalWeights) {
  for (const GptConfig& c : {Gpt2(2), Llama()}) {
    ParamTable l = GptParamLayout(c);
    int64_t offset = 0;
    for (const ParamSpec& s : l.specs()) {
      EXPECT_EQ(s.offset, offset) << s.name;
      offset += s.numel();
      EXPECT_EQ(s.decay, s.shape.rank() == 2) << s.name;
      EXPECT_TRUE(l.Find(s.name).ok());
    }
    EXPECT_EQ(offset, l.total());
  }
  ParamTable l = GptParamLayout(Gpt2(2));
  auto missing = l.Find("blocks.9.ln1.weight");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "blocks.9.ln1.weight"));
  // GPT-2: 16 llm.c tensors; LLaMA has no wpe / biases and an untied head.
  EXPECT_EQ(l.specs().size(), 2u + 12u * 2 + 2u);
  EXPECT_TRUE(GptParamLayout(Llama()).Find("lm_head.weight").ok());
  EXPECT_FALSE(GptParamLayout(Llama()).Find("wpe.weight").ok());
}

TEST(InitParams, SameSeedSameParamsOtherSeedOther) {
  ParamTable l = GptParamLayout(Gpt2(2));
  std::vector<float> a = Init(l, 1337), b = Init(l, 1337), c = Init(l, 1338);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  // Every normal-initialised element differs between seeds (up to chance coincidences).
  int64_t normal = 0, same = 0;
  for (const ParamSpec& s : l.specs()) {
    if (s.init != InitKind::kNormal) continue;
    for (int64_t i = 0; i < s.numel(); ++i) {
      if (a[s.offset + i] == 0.0f) continue;  // padded rows
      ++normal;
      same += a[s.offset + i] == c[s.offset + i];
    }
  }
  EXPECT_GT(normal, 50000);
  EXPECT_LT(same, normal / 1000);
}

// An element's value depends on (seed, name, index) only: a deeper model shares the shallower
// model's parameters of the same name, wherever they sit in the buffer.
TEST(InitParams, ValueDependsOnNameNotPosition) {
  ParamTable l2 = GptParamLayout(Gpt2(2)), l4 = GptParamLayout(Gpt2(4));
  std::vector<float> a = Init(l2, 7), b = Init(l4, 7);
  int shared = 0;
  for (const ParamSpec& s : l2.specs()) {
    auto t = l4.Find(s.name);
    if (!t.ok()) continue;
    ASSERT_EQ((*t)->shape, s.shape);
    if ((*t)->std == s.std) {
      EXPECT_EQ(std::memcmp(a.data() + s.offset, b.data() + (*t)->offset, s.numel() * 4), 0)
          << s.name;
    } else {
      // Residual projections scale with depth (0.02 / sqrt(2L)); the normal draws are shared.
      EXPECT_TRUE(absl::StrContains(s.name, "proj")) << s.name;
      for (int64_t i = 0; i < s.numel(); ++i) {
        ASSERT_NEAR(a[s.offset + i] / s.std, b[(*t)->offset + i] / (*t)->std, 1e-5)
            << s.name << "[" << i << "]";
      }
    }
    ++shared;
  }
  // Every tensor of the 2-layer model is in the 4-layer one (ln_f at another offset).
  EXPECT_EQ(shared, static_cast<int>(l2.specs().size()));
}

void CheckStatistics(const GptConfig& c) {
  ParamTable l = GptParamLayout(c);
  std::vector<float> p = Init(l, 42);
  const float proj_std = 0.02f / std::sqrt(2.0f * c.layers);
  for (const ParamSpec& s : l.specs()) {
    const float* x = p.data() + s.offset;
    const bool norm = absl::StrContains(s.name, "norm") || absl::StrContains(s.name, "ln");
    const bool bias = absl::EndsWith(s.name, ".bias");
    if (bias) {
      for (int64_t i = 0; i < s.numel(); ++i) ASSERT_EQ(x[i], 0.0f) << s.name << "[" << i << "]";
      continue;
    }
    if (norm) {
      for (int64_t i = 0; i < s.numel(); ++i) ASSERT_EQ(x[i], 1.0f) << s.name << "[" << i << "]";
      continue;
    }
    ASSERT_EQ(s.shape.rank(), 2) << s.name;
    const int64_t rows = s.shape[0], cols = s.shape[1];
    const bool vocab_rows = s.name == "wte.weight" || s.name == "lm_head.weight";
    const int64_t real_rows = vocab_rows ? c.vocab : rows;
    for (int64_t i = real_rows * cols; i < rows * cols; ++i) {
      ASSERT_EQ(x[i], 0.0f) << "padded row " << i / cols << " of " << s.name;
    }
    double sum = 0, sq = 0;
    const int64_t n = real_rows * cols;
    for (int64_t i = 0; i < n; ++i) {
      sum += x[i];
      sq += static_cast<double>(x[i]) * x[i];
    }
    const bool residual = absl::EndsWith(s.name, "attn.proj.weight") ||
                          absl::EndsWith(s.name, "mlp.proj.weight") ||
                          absl::EndsWith(s.name, "mlp.down.weight");
    const double want = residual ? proj_std : 0.02;
    const double mean = sum / n, std = std::sqrt(sq / n - mean * mean);
    // Standard errors: std / sqrt(n) for the mean, about std / sqrt(2n) for the std; 5 of them.
    EXPECT_NEAR(mean, 0.0, 5 * want / std::sqrt(n)) << s.name;
    EXPECT_NEAR(std, want, 5 * want / std::sqrt(2.0 * n)) << s.name << " (n = " << n << ")";
    // The last real row of a vocab matrix is initialised like the others.
    if (vocab_rows) {
      double last = 0;
      for (int64_t j = 0; j < cols; ++j) last += std::fabs(x[(real_rows - 1) * cols + j]);
      EXPECT_GT(last, 0.0) << s.name;
    }
  }
}

TEST(InitParams, Gpt2Statistics) { CheckStatistics(Gpt2(4)); }
TEST(InitParams, LlamaStatistics) { CheckStatistics(Llama()); }

TEST(InitParams, RefusesWrongBuffer) {
  ParamTable l = GptParamLayout(Gpt2(2));
  auto t = Tensor::Zeros(Shape{l.total() - 1}, DType::kF32, CpuDevice());
  ASSERT_TRUE(t.ok());
  absl::Status s = InitParams(l, 1, *t);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), std::to_string(l.total()))) << s;
}

TEST(GptConfig, ValidateNamesTheField) {
  GptConfig c = Llama();
  c.kv_heads = 3;
  absl::Status s = c.Validate();
  EXPECT_TRUE(absl::StrContains(s.message(), "model.kv_heads")) << s;
  c = Gpt2(2);
  c.padded_vocab = 100;
  s = c.Validate();
  EXPECT_TRUE(absl::StrContains(s.message(), "padded vocab")) << s;
  c = Gpt2(2);
  c.hidden = 66;
  s = c.Validate();
  EXPECT_TRUE(absl::StrContains(s.message(), "model.hidden")) << s;
}

}  // namespace
}  // namespace loom
