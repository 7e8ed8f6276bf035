// Generation under mpirun (2 ranks): the tensor group of the world generates together (each
// rank its slices of the model, the vocab slices of the logits gathered each step) and gives
// the tokens one process gives, greedy and sampled; and a checkpoint saved by a tp 2 training
// run loads into one process (consolidated) and into the tensor group alike.
#include <mpi.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/gpt_params.h"
#include "model/model_file.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"
#include "train/generate.h"
#include "train/trainer.h"

namespace loom {
namespace {

void ExpectSameGeneration(GenerateOptions o, World* world, const std::string& what) {
  for (float temperature : {0.0f, 0.8f}) {
    o.sampling = {temperature, 30, 0.95f};
    o.seed = 3;
    auto alone = Generate(o, World::Self());
    ASSERT_TRUE(alone.ok()) << alone.status();
    auto together = Generate(o, world);
    ASSERT_TRUE(together.ok()) << together.status();
    EXPECT_EQ(alone->new_ids, together->new_ids) << what << ", temperature " << temperature;
    EXPECT_FALSE(alone->new_ids.empty());
  }
}

TEST(GenerateTpTest, TensorGroupGeneratesAsOneProcess) {
  World* world = *World::Get();
  world->state()->timeout = absl::Seconds(60);
  ASSERT_EQ(world->size(), 2);
  const testing::ScopedTempDir tmp(absl::StrCat("generate_tp", world->rank()));
  for (bool llama : {false, true}) {
    GptConfig c;
    c.family = llama ? ModelFamily::kLlama : ModelFamily::kGpt2;
    c.layers = 2;
    c.heads = 4;
    c.kv_heads = 2;
    c.hidden = 32;
    c.ffn_hidden = 64;
    c.vocab = 257;
    c.padded_vocab = 272;
    c.max_seq = 40;
    c.tied_embeddings = !llama;
    if (!llama) c.kv_heads = 4;
    ASSERT_TRUE(c.Validate().ok());
    const ParamTable table = GptParamLayout(c);
    Tensor p = *Tensor::Zeros(Shape{table.total()}, DType::kF32, CpuDevice());
    ASSERT_TRUE(InitParams(table, 21, p).ok());
    GenerateOptions o;
    o.from = tmp.path() + (llama ? "/llama.bin" : "/gpt2.bin");
    ASSERT_TRUE(WriteLoomModelFile(o.from, c, *p.ToFloatVector()).ok());
    o.prompt = "line 1: the";
    o.max_new_tokens = 16;
    o.stop_at_eot = false;
    ExpectSameGeneration(o, world, llama ? "LLaMA model file" : "GPT-2 model file");
  }
  // A checkpoint of a tp 2 run: consolidated into one process, or sliced for the group. The
  // ranks share rank 0's directory (it removes it after the last barrier).
  std::optional<testing::ScopedTempDir> owner;
  std::string root;
  if (world->rank() == 0) {
    owner.emplace("generate_tp_ckpt");
    root = owner->path();
  }
  int len = static_cast<int>(root.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  root.resize(len);
  MPI_Bcast(root.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (world->rank() == 0) testing::WriteTextShard(root + "/train_000.bin", "the quick brown", 60);
  MPI_Barrier(MPI_COMM_WORLD);
  auto job = testing::JobFromText(absl::StrCat(R"(
model { family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 4 tp: 2 }
optimizer { lr: 0.01 }
lr_schedule { total_steps: 2 }
data { train: "$DIR/train_*.bin" seq_len: 32 }
checkpoint { dir: "$DIR/ckpt" }
runtime { backend: CPU seed: 3 }
)"),
                                  root);
  ASSERT_TRUE(job.ok()) << job.status();
  std::unique_ptr<Trainer> trainer;
  testing::TrainSteps(*job, world, 2, &trainer);
  ASSERT_TRUE(trainer != nullptr);
  const absl::Status ran = trainer->Run();  // saves at the end
  ASSERT_TRUE(ran.ok()) << ran;
  GenerateOptions o;
  o.from = root + "/ckpt";
  o.prompt = "line 7: the";
  o.max_new_tokens = 12;
  o.stop_at_eot = false;
  ExpectSameGeneration(o, world, "tp 2 checkpoint");
  trainer.reset();
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace loom
