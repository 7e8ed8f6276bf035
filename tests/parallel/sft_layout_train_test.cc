// "Layout does not change the math" for fine-tuning data: shards with token flags (a loss mask
// that counts some tokens of each line and none of others, and a document start at every line,
// so attention is block-diagonal) train GPT-2 and LLaMA tiny models 4 steps on dp 2 (ZeRO-1
// off and on), tp 2 (vocab-parallel cross-entropy, with and without sequence parallelism) and
// pp 2 (1F1B), and each must match a 1-rank run to 1e-5: the losses (the mean over the counted
// targets of the global batch, whose count differs between micro-batches and between the
// data-parallel replicas), the gradient norms and the final weights; the validation loss on
// masked data too where the layout evaluates the same batches (tp, pp).
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data/token_flags.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr int kSteps = 4;

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  bool sp = false, zero = false;
};

// The vocabulary is padded to a multiple of pad_multiple * tp: every run pads it to 32.
std::string Job(bool llama, const Layout& l) {
  const std::string model =
      llama ? "family: LLAMA layers: 2 heads: 4 kv_heads: 2 hidden: 32 vocab: 257 max_seq: 32"
            : "family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32";
  return absl::StrCat("model { ", model, " vocab_pad_multiple: ", 32 / l.tp, " }\n",
                      "parallel { micro_batch_size: 2 global_batch_size: 8 tp: ", l.tp,
                      " pp: ", l.pp, " sequence_parallel: ", l.sp ? "true" : "false",
                      " distributed_optimizer: ", l.zero ? "true" : "false", " }\n",
                      R"(optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 1 decay_style: COSINE min_lr: 0.001 total_steps: 6 }
data { train: "$DIR/train_*.bin" val: "$DIR/val_*.bin" seq_len: 32 }
logging { interval: 1 eval_interval: 0 eval_batches: 2 }
runtime { backend: CPU seed: 5 }
)");
}

TEST(SftLayoutTrainTest, EveryLayoutMatchesOneRank) {
  World* world = *World::Get();
  world->state()->timeout = absl::Seconds(60);
  ASSERT_EQ(world->size(), 2) << "this test runs on 2 ranks";
  const testing::ScopedTempDir tmp(absl::StrCat("sft_layout_rank", world->rank()));
  const std::string dir = tmp.path();
  testing::WriteSftShard(dir + "/train_000.bin", 60);
  testing::WriteSftShard(dir + "/val_000.bin", 20);
  for (bool llama : {false, true}) {
    auto ref_job = testing::JobFromText(Job(llama, {}), dir);
    ASSERT_TRUE(ref_job.ok()) << ref_job.status();
    std::unique_ptr<Trainer> ref_trainer;
    const testing::TrainRun ref =
        testing::TrainSteps(*ref_job, World::Self(), kSteps, &ref_trainer);
    ASSERT_TRUE(ref_trainer != nullptr);
    auto ref_val = ref_trainer->Evaluate();
    ASSERT_TRUE(ref_val.ok()) << ref_val.status();
    for (const Layout& l : {Layout{.dp = 2}, Layout{.dp = 2, .zero = true}, Layout{.tp = 2},
                            Layout{.tp = 2, .sp = true}, Layout{.pp = 2}}) {
      const std::string what =
          absl::StrCat(llama ? "LLaMA" : "GPT-2", " dp ", l.dp, " tp ", l.tp, " pp ", l.pp,
                       l.sp ? " sequence parallel" : "", l.zero ? " ZeRO-1" : "");
      auto job = testing::JobFromText(Job(llama, l), dir);
      ASSERT_TRUE(job.ok()) << job.status();
      std::unique_ptr<Trainer> trainer;
      const testing::TrainRun got = testing::TrainSteps(*job, world, kSteps, &trainer);
      testing::ExpectSameTraining(got, ref, what);
      ASSERT_TRUE(trainer != nullptr);
      // Data-parallel replicas evaluate their own shares of the validation data; the other
      // layouts see the reference's batches.
      auto val = trainer->Evaluate();
      ASSERT_TRUE(val.ok()) << val.status();
      if (l.dp == 1) EXPECT_NEAR(*val, *ref_val, 1e-5 * *ref_val) << what << ": validation loss";
      if (world->rank() == 0) std::cout << what << ": compared with 1 rank" << std::endl;
    }
  }
}

}  // namespace
}  // namespace loom
