// "Layout does not change the math" for tensor, sequence and data parallelism together: for
// every (dp, tp) layout that fills the world this binary runs in (ctest runs it at 2, 3 and 4
// ranks: (2,1), (1,2), (3,1), (2,2), (1,4)), with sequence parallelism off and on when tp > 1
// and the distributed optimizer (ZeRO-1) off and on when dp > 1 (tiny gradient buckets, so the
// reduction runs in many overlapped buckets),
// GPT-2 and LLaMA tiny models train 5 steps and must match a 1-rank run of the same job (same
// padded vocabulary) to 1e-5 relative: the losses and gradient norms step by step, and the final
// weights gathered over the tensor group. The vocabulary (257) does not divide tp.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "train/trainer.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"

namespace loom {
namespace {

constexpr int kSteps = 5;

std::string Job(bool llama, int tp, bool sp, int pad_multiple, bool zero = false) {
  const std::string model =
      llama ? "family: LLAMA layers: 2 heads: 8 kv_heads: 4 hidden: 32 vocab: 257 max_seq: 32"
            : "family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32";
  return absl::StrCat("model { ", model, " vocab_pad_multiple: ", pad_multiple, " }\n",
                      "parallel { micro_batch_size: 2 global_batch_size: 12 tp: ", tp,
                      " sequence_parallel: ", sp ? "true" : "false",
                      " distributed_optimizer: ", zero ? "true" : "false",
                      " grad_bucket_mb: 0.01 }\n",
                      R"(optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 decay_style: COSINE min_lr: 0.001 total_steps: 6 }
data { train: "$DIR/train_*.bin" seq_len: 32 }
logging { interval: 1 }
runtime { backend: CPU seed: 7 }
)");
}

using testing::TrainRun;

TEST(TensorParallelTrainTest, EveryLayoutMatchesOneRank) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  world->state()->timeout = absl::Seconds(60);
  const int n = world->size();
  const testing::ScopedTempDir tmp(absl::StrCat("tp_rank", world->rank()));
  const std::string dir = tmp.path();
  testing::WriteTextShard(dir + "/train_000.bin", "the quick brown fox jumps over the lazy dog.",
                          80);
  constexpr int kPad = 8;
  for (bool llama : {false, true}) {
    for (int tp : {1, 2, 4}) {
      if (n % tp != 0) continue;
      const int dp = n / tp;
      if (12 % (2 * dp) != 0) continue;  // the global batch must split into whole micro-batches
      // The 1-rank reference pads the vocabulary as the tp run does (to kPad * tp).
      auto ref_job = testing::JobFromText(Job(llama, 1, false, kPad * tp), dir);
      ASSERT_TRUE(ref_job.ok()) << ref_job.status();
      const TrainRun ref = testing::TrainSteps(*ref_job, World::Self(), kSteps);
      for (bool sp : {false, true}) {
        for (bool zero : {false, true}) {
          if ((sp && tp == 1) || (zero && dp == 1)) continue;
          const std::string what = absl::StrCat(
              llama ? "LLaMA" : "GPT-2", " dp ", dp, " tp ", tp, sp ? " with" : " without",
              " sequence parallelism,", zero ? " distributed" : " plain", " optimizer");
          auto job = testing::JobFromText(Job(llama, tp, sp, kPad, zero), dir);
          ASSERT_TRUE(job.ok()) << job.status();
          const TrainRun got = testing::TrainSteps(*job, world, kSteps);
          testing::ExpectSameTraining(got, ref, what);
          if (world->rank() == 0) std::cout << what << ": compared with 1 rank" << std::endl;
        }
      }
    }
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
