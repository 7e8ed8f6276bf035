// GatherGlobalParams under mpirun (tp = world size, 2 and 4 ranks): every tensor rank
// initialises only its slices; the gathered model equals the 1-rank initialisation bit for bit,
// on every rank, for both families.
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "model/gpt_params.h"
#include "parallel/param_table.h"
#include "parallel/world.h"

namespace loom {
namespace {

GptConfig Config(bool llama) {
  GptConfig c;
  c.family = llama ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = 2;
  c.heads = 8;
  c.kv_heads = llama ? 4 : 8;
  c.hidden = 64;
  c.ffn_hidden = llama ? 96 : 256;
  c.vocab = 257;
  c.padded_vocab = 264;
  c.max_seq = 16;
  c.tied_embeddings = !llama;
  return c;
}

TEST(ParamGatherTest, GatheredSlicesEqualTheOneRankModel) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  Communicator& tp = (*w)->comm();
  for (bool llama : {false, true}) {
    const GptConfig c = Config(llama);
    auto t = GptParamTable(c, tp.size(), tp.rank());
    ASSERT_TRUE(t.ok()) << t.status();
    std::vector<float> local(t->total());
    Tensor buf = Tensor::View(local.data(), Shape{t->total()}, DType::kF32, CpuDevice());
    ASSERT_TRUE(InitParams(*t, 99, buf).ok());
    auto gathered = GatherGlobalParams(*t, buf, tp);
    ASSERT_TRUE(gathered.ok()) << gathered.status();
    const ParamTable whole = GptParamLayout(c);
    std::vector<float> want(whole.total());
    ASSERT_TRUE(InitParams(whole, 99, Tensor::View(want.data(), Shape{whole.total()}, DType::kF32,
                                                   CpuDevice()))
                    .ok());
    ASSERT_EQ(gathered->size(), want.size());
    EXPECT_EQ(0, std::memcmp(gathered->data(), want.data(), want.size() * sizeof(float)))
        << (llama ? "LLaMA" : "GPT-2") << " at tp " << tp.size();
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
