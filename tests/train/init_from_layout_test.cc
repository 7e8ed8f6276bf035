// model.init_from on every layout against independent references (issue 20): each rank reads
// only its own slices of the model file, with the job's default vocabulary padding (128 * tp
// rows for a vocabulary of 64, where the files hold 128 rows, or 64 for Hugging Face), and the
// training losses are those of the reference:
//   - the PyTorch golden models (tools/gen_model_fixture.py): GPT-2 from its llm.c file and
//     LLaMA from its loom file, the losses of 5 clipped AdamW steps;
//   - the transformers models (tools/gen_hf_fixtures.py): GPT2LMHeadModel (f32) and
//     LlamaForCausalLM (bf16; f16 in shards) read from their Hugging Face directories, the
//     loss at step 0 against transformers' to 1e-5.
// Layouts, for the world this binary runs in (ctest runs it at 2, 4 and 8 ranks):
//   2: tp 2, pp 2, dp 2 with the distributed optimizer;
//   4: tp 2 x pp 2 with sequence parallelism, dp 2 x tp 2 with the distributed optimizer;
//   8: dp 2 x tp 2 x pp 2 with sequence parallelism and the distributed optimizer.
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"
#include "train/trainer.h"

namespace loom {
namespace {

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  bool sp = false, zero = false;
};

std::vector<Layout> LayoutsFor(int n) {
  if (n == 2) return {{.tp = 2}, {.pp = 2}, {.dp = 2, .zero = true}};
  if (n == 4) return {{.tp = 2, .pp = 2, .sp = true}, {.dp = 2, .tp = 2, .zero = true}};
  if (n == 8) return {{.dp = 2, .tp = 2, .pp = 2, .sp = true, .zero = true}};
  return {};
}

std::string Describe(const Layout& l) {
  return absl::StrCat("dp ", l.dp, " tp ", l.tp, " pp ", l.pp, l.sp ? " +SP" : "",
                      l.zero ? " +ZeRO" : "");
}

// A fixture's reference and where its weights are.
struct Source {
  std::string name;     // the fixture
  std::string fixture;  // its LOOMFIX1 file
  std::string weights;  // model.init_from
  int steps;            // steps compared with the fixture's step_losses (0: the loss only)
};

std::vector<Source> Sources() {
  const std::string hf = testing::SourceDir() + "/tests/fixtures/hf/";
  return {
      {"gpt2 (llm.c file)", testing::ModelFixturePath("gpt2.bin"),
       testing::ModelFixturePath("gpt2.llmc.bin"), 5},
      {"llama (loom file)", testing::ModelFixturePath("llama.bin"),
       testing::ModelFixturePath("llama.loom.bin"), 5},
      {"GPT2LMHeadModel f32", hf + "gpt2_f32.bin", hf + "gpt2_f32", 0},
      {"LlamaForCausalLM bf16", hf + "llama_bf16.bin", hf + "llama_bf16", 0},
      {"LlamaForCausalLM f16 shards", hf + "llama_f16_sharded.bin", hf + "llama_f16_sharded", 0},
  };
}

// The fixture model's job on layout `l`: its shape with the default vocabulary padding, its
// token stream as the one unshuffled shard, one global batch of the fixture's B rows, the
// fixture's optimizer settings where it has them.
absl::StatusOr<JobConfig> LayoutJob(const testing::Fixture& fx, const Source& src,
                                    const std::string& dir, const Layout& l) {
  LOOM_ASSIGN_OR_RETURN(GptConfig c, testing::ConfigFromFixture(fx));
  LOOM_ASSIGN_OR_RETURN(Tensor stream, fx.Get("stream"));
  LOOM_ASSIGN_OR_RETURN(Tensor tokens, fx.Get("tokens"));
  std::vector<uint16_t> ids(stream.numel());
  for (int64_t i = 0; i < stream.numel(); ++i) {
    ids[i] = static_cast<uint16_t>(stream.data_as<int32_t>()[i]);
  }
  const std::string shard = dir + "/train.bin";
  LOOM_RETURN_IF_ERROR(WriteShard(shard, ids, ShardFormat::kLlmc));
  std::string optimizer =
      "lr: 0.003 beta1: 0.9 beta2: 0.95 eps: 1e-8 weight_decay: 0.1 grad_clip: 1";
  if (src.steps > 0) {
    LOOM_ASSIGN_OR_RETURN(testing::FixtureTraining t, testing::TrainingFromFixture(fx));
    optimizer = absl::StrCat("lr: ", t.lr, " beta1: ", t.adam.beta1, " beta2: ", t.adam.beta2,
                             " eps: ", t.adam.eps, " weight_decay: ", t.adam.weight_decay,
                             " grad_clip: ", t.grad_clip);
  }
  const int64_t batch = tokens.dim(0);
  const std::string text = absl::StrCat(
      "model { family: ", c.is_llama() ? "LLAMA" : "GPT2", " layers: ", c.layers,
      " heads: ", c.heads, " kv_heads: ", c.kv_heads, " hidden: ", c.hidden,
      " ffn_hidden: ", c.ffn_hidden, " vocab: ", c.vocab, " max_seq: ", c.max_seq,
      " tied_embeddings: ", c.tied_embeddings ? "true" : "false", " norm_eps: ", c.norm_eps,
      " rope_theta: ", c.rope_theta, " init_from: \"", src.weights, "\" }\n",
      "parallel { micro_batch_size: ", batch / l.dp, " global_batch_size: ", batch, " tp: ", l.tp,
      " pp: ", l.pp, " sequence_parallel: ", l.sp ? "true" : "false",
      " distributed_optimizer: ", l.zero ? "true" : "false", " }\n", "optimizer { ", optimizer,
      " }\n", "lr_schedule { warmup_steps: 0 decay_style: CONSTANT total_steps: 10 }\n",
      "data { train: \"", shard, "\" seq_len: ", tokens.dim(1), " shuffle: false }\n",
      "runtime { backend: CPU seed: 1 }\n");
  return testing::JobFromText(text, dir);
}

TEST(InitFromLayoutTest, EveryLayoutTrainsTheReferenceModel) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  world->state()->timeout = absl::Seconds(60);
  const std::vector<Layout> layouts = LayoutsFor(world->size());
  ASSERT_FALSE(layouts.empty()) << "no layouts for " << world->size() << " ranks (run at 2, 4, 8)";
  const testing::ScopedTempDir tmp(absl::StrCat("init_from_rank", world->rank()));
  for (const Source& src : Sources()) {
    auto fx = testing::Fixture::LoadFile(src.fixture);
    ASSERT_TRUE(fx.ok()) << fx.status();
    for (const Layout& l : layouts) {
      const std::string what = absl::StrCat(src.name, " on ", Describe(l));
      auto job = LayoutJob(*fx, src, tmp.path(), l);
      ASSERT_TRUE(job.ok()) << what << ": " << job.status();
      std::unique_ptr<Trainer> t;
      const testing::TrainRun run = testing::TrainSteps(*job, world, std::max(src.steps, 1), &t);
      ASSERT_EQ(static_cast<int>(run.losses.size()), std::max(src.steps, 1)) << what;
      // The padded vocabulary is the job's default, not the file's.
      EXPECT_EQ(t->numbers().padded_vocab, 128 * l.tp) << what;
      if (src.steps == 0) {
        auto want = fx->Float("loss");
        ASSERT_TRUE(want.ok());
        EXPECT_NEAR(run.losses[0], *want, 1e-5 * *want) << what << ": loss at step 0";
      } else {
        auto want = fx->Get("step_losses");
        ASSERT_TRUE(want.ok());
        for (int k = 0; k < src.steps; ++k) {
          const float wl = want->data_as<float>()[k];
          // Step 1 is the loss of the weights as read; later ones add AdamW's rounding.
          EXPECT_NEAR(run.losses[k], wl, (k == 0 ? 1e-5 : 1e-4) * wl) << what << ": step " << k + 1;
        }
      }
      if (world->rank() == 0 && !::testing::Test::HasFailure()) {
        std::cout << what << ": loss " << run.losses[0] << " matches the reference" << std::endl;
      }
    }
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
