// The sharded parameter table: for tp in {1, 2, 4} and both model families, the slices every
// tensor rank initialises, put together by their pieces, equal the 1-rank parameters bit for
// bit; fused QKV and gate_up slices hold whole local heads / whole rows of both halves; the
// split flags; refusals. Runs in one process; param_gather_test checks GatherGlobalParams
// under mpirun.
#include "parallel/param_table.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "model/gpt_params.h"

namespace loom {
namespace {

GptConfig Gpt2() {
  GptConfig c;
  c.family = ModelFamily::kGpt2;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 4;
  c.hidden = 32;
  c.ffn_hidden = 128;
  c.vocab = 257;
  c.padded_vocab = 264;
  c.max_seq = 16;
  return c;
}

GptConfig Llama() {
  GptConfig c;
  c.family = ModelFamily::kLlama;
  c.layers = 2;
  c.heads = 8;
  c.kv_heads = 4;  // grouped-query attention: two query heads per kv head
  c.hidden = 64;
  c.ffn_hidden = 96;
  c.vocab = 257;
  c.padded_vocab = 264;
  c.max_seq = 16;
  c.tied_embeddings = false;
  return c;
}

std::vector<float> Init(const ParamTable& t, uint64_t seed) {
  std::vector<float> v(t.total());
  Tensor buf = Tensor::View(v.data(), Shape{t.total()}, DType::kF32, CpuDevice());
  EXPECT_TRUE(InitParams(t, seed, buf).ok());
  return v;
}

// Writes one rank's local values into the global buffer by its pieces (2-D or 1-D boxes).
void Scatter(const ParamTable& t, const std::vector<float>& local, const ParamTable& whole,
             std::vector<float>& global, std::vector<int>& hits) {
  for (const ParamSpec& s : t.specs()) {
    const ParamSpec& g = **whole.Find(s.name);
    const int64_t cols = s.global_shape.rank() > 1 ? s.global_shape[1] : 1;
    int64_t at = s.offset;
    for (const TensorBox& b : s.pieces) {
      const int64_t rows = b.extent[0], w = b.extent.size() > 1 ? b.extent[1] : 1;
      const int64_t c0 = b.offset.size() > 1 ? b.offset[1] : 0;
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < w; ++j) {
          const int64_t gi = g.offset + (b.offset[0] + i) * cols + c0 + j;
          global[gi] = local[at++];
          ++hits[gi];
        }
      }
    }
    ASSERT_EQ(at, s.offset + s.numel()) << s.name;
  }
}

void CheckSlicesAssembleToWhole(const GptConfig& c) {
  const ParamTable whole = GptParamLayout(c);
  const std::vector<float> want = Init(whole, 1234);
  for (int tp : {1, 2, 4}) {
    std::vector<float> global(whole.total(), -7.0f);
    std::vector<int> hits(whole.total(), 0);
    for (int r = 0; r < tp; ++r) {
      auto t = GptParamTable(c, tp, r);
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(t->global_total(), whole.total());
      Scatter(*t, Init(*t, 1234), whole, global, hits);
    }
    for (int64_t i = 0; i < whole.total(); ++i) {
      // Replicated parameters are held by every rank, the others by exactly one.
      ASSERT_GE(hits[i], 1) << "tp " << tp << " element " << i << " held by no rank";
    }
    EXPECT_EQ(0, std::memcmp(global.data(), want.data(), want.size() * sizeof(float)))
        << "tp " << tp << ": the slices do not assemble to the 1-rank parameters bit for bit";
  }
}

TEST(ParamTableTest, Gpt2SlicesAssembleToTheOneRankModel) { CheckSlicesAssembleToWhole(Gpt2()); }
TEST(ParamTableTest, LlamaSlicesAssembleToTheOneRankModel) { CheckSlicesAssembleToWhole(Llama()); }

TEST(ParamTableTest, FusedQkvSliceHoldsWholeLocalHeads) {
  const GptConfig c = Llama();  // 8 query heads, 4 kv heads, head dim 8
  const int hd = c.head_dim();
  for (int r = 0; r < 2; ++r) {
    auto t = GptParamTable(c, 2, r);
    ASSERT_TRUE(t.ok());
    const ParamSpec& qkv = **t->Find("blocks.0.attn.qkv.weight");
    ASSERT_EQ(qkv.pieces.size(), 3u);
    // Q rows of query heads 4r..4r+3, K rows of kv heads 2r..2r+1, V rows likewise.
    EXPECT_EQ(qkv.pieces[0].offset[0], r * 4 * hd);
    EXPECT_EQ(qkv.pieces[0].extent[0], 4 * hd);
    EXPECT_EQ(qkv.pieces[1].offset[0], c.heads * hd + r * 2 * hd);
    EXPECT_EQ(qkv.pieces[1].extent[0], 2 * hd);
    EXPECT_EQ(qkv.pieces[2].offset[0], (c.heads + c.kv_heads) * hd + r * 2 * hd);
    EXPECT_EQ(qkv.shape, (Shape{(4 + 2 * 2) * hd, c.hidden}));
    const ParamSpec& gu = **t->Find("blocks.1.mlp.gate_up.weight");
    ASSERT_EQ(gu.pieces.size(), 2u);
    EXPECT_EQ(gu.pieces[0].offset[0], r * 48);
    EXPECT_EQ(gu.pieces[1].offset[0], 96 + r * 48);
    const ParamSpec& down = **t->Find("blocks.1.mlp.down.weight");
    EXPECT_EQ(down.shape, (Shape{c.hidden, 48}));
    EXPECT_EQ(down.pieces[0].offset, (std::vector<int64_t>{0, r * 48}));
  }
}

TEST(ParamTableTest, ReplicatedGradientsAreTheNormsAndRowParallelBiases) {
  auto t = GptParamTable(Gpt2(), 2, 1);
  ASSERT_TRUE(t.ok());
  for (const char* name : {"blocks.0.ln1.weight", "blocks.0.attn.proj.bias",
                           "blocks.1.mlp.proj.bias", "ln_f.bias", "wpe.weight"}) {
    EXPECT_TRUE((*t->Find(name))->grad_replicated_over_tp()) << name;
  }
  for (const char* name : {"wte.weight", "blocks.0.attn.qkv.bias", "blocks.0.mlp.fc.bias",
                           "blocks.0.attn.proj.weight"}) {
    EXPECT_FALSE((*t->Find(name))->grad_replicated_over_tp()) << name;
  }
  EXPECT_EQ((*t->Find("wte.weight"))->shape, (Shape{132, 32}));
}

// One owner per parameter across the copies of the model: the gradient norm counts and the
// checkpoint writes exactly one copy of every global element (OwnsParam).
TEST(ParamTableTest, EveryGlobalElementHasExactlyOneOwner) {
  int64_t owned = 0, global = 0;
  for (int tp_rank = 0; tp_rank < 2; ++tp_rank) {
    auto t = GptParamTable(Gpt2(), 2, tp_rank);
    ASSERT_TRUE(t.ok());
    global = t->global_total();
    for (const ParamSpec& s : t->specs()) {
      if (OwnsParam(s, tp_rank)) owned += s.numel();
    }
    EXPECT_EQ(OwnsParam(**t->Find("ln_f.bias"), tp_rank), tp_rank == 0);
    EXPECT_TRUE(OwnsParam(**t->Find("blocks.0.attn.qkv.weight"), tp_rank));
  }
  // The padded vocab rows are held but not counted as global elements.
  auto one = GptParamTable(Gpt2(), 1, 0);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(owned, one->total());
  EXPECT_GE(owned, global);
  ParamSpec copy = **one->Find("wte.weight");
  copy.tied_copy = true;
  EXPECT_FALSE(OwnsParam(copy, 0)) << "a stage's copy of a tied parameter is not its owner";
}

TEST(ParamTableTest, SplitsThatDoNotDivideAreRefusedByName) {
  GptConfig c = Llama();
  c.kv_heads = 2;  // 2 kv heads over tp 4
  auto t = GptParamTable(c, 4, 0);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("blocks.0.attn.qkv.weight"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("tp = 4"), std::string::npos) << t.status();
  c = Gpt2();
  c.padded_vocab = 258;
  t = GptParamTable(c, 4, 1);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("wte.weight"), std::string::npos) << t.status();
  EXPECT_FALSE(GptParamTable(Gpt2(), 2, 2).ok());
}

}  // namespace
}  // namespace loom
