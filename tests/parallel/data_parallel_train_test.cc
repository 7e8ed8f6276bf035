// Data parallelism against one rank taking the whole global batch, run under mpirun with 2 and
// with 3 ranks: the same losses step by step, the same gradient norm with clipping off (so the
// gradients are averaged, not summed, over ranks), the same weights, and ranks that agree bit
// for bit.
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "train/trainer.h"
#include "data/tokenizer.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"

namespace loom {
namespace {

constexpr char kJob[] = R"(
model { family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 12 }
optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 decay_style: COSINE min_lr: 0.001 total_steps: 6 }
data { train: "$DIR/train_*.bin" seq_len: 32 }
logging { interval: 1 }
runtime { backend: CPU seed: 7 }
)";
// Micro-batches of the global batch of 12 sequences: 6 on one rank, 6 / dp on each of dp ranks.
constexpr int kMicroBatches = 6;

using testing::Steps;  // tests/train/train_testing.h: k steps, their losses and gradient norms

class DataParallelTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto world = World::Get();
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = *world;
    ASSERT_TRUE(world_->size() == 2 || world_->size() == 3) << "run under mpirun -np 2 or 3";
    // Each rank writes the same shard into its own directory (no shared-file races).
    dir_ = tmp_.path();
    testing::WriteTextShard(dir_ + "/train_000.bin", "pack my box with five dozen liquor jugs.",
                            60);
    testing::WriteTextShard(dir_ + "/val_000.bin", "sphinx of black quartz, judge my vow.", 30,
                            "held out");
  }

  // Fails unless every rank holds rank 0's weights bit for bit.
  void ExpectSameWeightsOnAllRanks(Trainer& t) {
    auto params = t.model().params().ToFloatVector();
    ASSERT_TRUE(params.ok());
    std::vector<float> root = *params;
    MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
    EXPECT_EQ(std::memcmp(params->data(), root.data(), root.size() * sizeof(float)), 0)
        << "rank " << world_->rank() << " drifted from rank 0";
  }

  World* world_ = nullptr;
  testing::ScopedTempDir tmp_{"dp"};  // named with the process id: one per rank
  std::string dir_;
};

// "Layout does not change the math": dp ranks that split the global batch (each its own
// micro-batches, gradients averaged by MPI all-reduce) give the same losses, step after step, as
// one rank taking the whole batch through gradient accumulation, to 1e-5 relative; and the
// ranks agree bit for bit on the weights.
TEST_F(DataParallelTrainTest, RanksMatchOneRankStepByStep) {
  const int dp = world_->size();
  constexpr int kSteps = 6;
  auto job = testing::JobFromText(kJob, dir_);
  ASSERT_TRUE(job.ok()) << job.status();
  auto dpn = Trainer::Create(*job, world_);
  ASSERT_TRUE(dpn.ok()) << dpn.status();
  EXPECT_EQ((*dpn)->numbers().dp, dp);
  EXPECT_EQ((*dpn)->numbers().grad_accum_steps, kMicroBatches / dp);
  const std::vector<float> losses = Steps(**dpn, kSteps).losses;
  ASSERT_EQ(losses.size(), static_cast<size_t>(kSteps));
  ExpectSameWeightsOnAllRanks(**dpn);

  if (world_->rank() == 0) {
    // The same job on one rank: the whole global batch through gradient accumulation.
    auto dp1 = Trainer::Create(*job, World::Self());
    ASSERT_TRUE(dp1.ok()) << dp1.status();
    EXPECT_EQ((*dp1)->numbers().dp, 1);
    EXPECT_EQ((*dp1)->numbers().grad_accum_steps, kMicroBatches);
    const std::vector<float> ref = Steps(**dp1, kSteps).losses;
    ASSERT_EQ(ref.size(), losses.size());
    for (int i = 0; i < kSteps; ++i) {
      EXPECT_NEAR(losses[i], ref[i], 1e-5 * std::fabs(ref[i])) << "step " << i + 1;
    }
    EXPECT_LT(losses.back(), losses.front());
  }
}

// The gradient itself, not only the loss: with clipping off, the all-reduced gradient's norm
// equals the one-rank gradient's (an all-reduce that sums instead of averaging gives dp times
// it; clipping and Adam's scale invariance would hide that in the losses), and after a few
// steps the weights are the one-rank weights.
TEST_F(DataParallelTrainTest, GradientNormAndWeightsMatchOneRankWithoutClipping) {
  constexpr int kSteps = 3;
  auto job = testing::JobFromText(kJob, dir_, {"optimizer.grad_clip=0"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto dpn = Trainer::Create(*job, world_);
  ASSERT_TRUE(dpn.ok()) << dpn.status();
  const testing::TrainRun run = Steps(**dpn, kSteps);
  ASSERT_EQ(run.grad_norms.size(), static_cast<size_t>(kSteps));
  ExpectSameWeightsOnAllRanks(**dpn);
  if (world_->rank() != 0) return;

  auto dp1 = Trainer::Create(*job, World::Self());
  ASSERT_TRUE(dp1.ok()) << dp1.status();
  const testing::TrainRun ref = Steps(**dp1, kSteps);
  ASSERT_EQ(ref.grad_norms.size(), static_cast<size_t>(kSteps));
  for (int i = 0; i < kSteps; ++i) {
    EXPECT_GT(ref.grad_norms[i], 1e-3) << "step " << i + 1;
    EXPECT_NEAR(run.grad_norms[i], ref.grad_norms[i], 1e-5 * ref.grad_norms[i])
        << "step " << i + 1 << ": the data-parallel gradient is " << run.grad_norms[i] / ref.grad_norms[i]
        << " times the one-rank gradient";
    EXPECT_NEAR(run.losses[i], ref.losses[i], 1e-5 * std::fabs(ref.losses[i])) << "step " << i + 1;
  }
  auto got = (*dpn)->model().params().ToFloatVector();
  auto want = (*dp1)->model().params().ToFloatVector();
  ASSERT_TRUE(got.ok() && want.ok());
  ASSERT_EQ(got->size(), want->size());
  double max_diff = 0;
  size_t worst = 0;
  for (size_t i = 0; i < got->size(); ++i) {
    const double d = std::fabs(static_cast<double>((*got)[i]) - (*want)[i]);
    if (d > max_diff) max_diff = d, worst = i;
  }
  EXPECT_LT(max_diff, 1e-5) << "parameter " << worst << ": " << (*got)[worst] << " vs "
                                  << (*want)[worst] << " on one rank";
}

// Validation under data parallelism: each of dp ranks evaluates eval_batches micro-batches of
// its share of the (unshuffled) validation set, and the all-reduced mean is the mean loss over
// all of them: the same as one rank evaluating dp times as many micro-batches, which are the
// same sequences (the union of the ranks' shares). A sum not divided by the world size would
// be dp times it.
TEST_F(DataParallelTrainTest, ValidationLossMatchesOneRank) {
  const int dp = world_->size();
  constexpr int kEvalBatches = 2;
  const std::string val = "data.val=" + dir_ + "/val_000.bin";
  auto job = testing::JobFromText(kJob, dir_, {val, absl::StrCat("logging.eval_batches=", kEvalBatches)});
  ASSERT_TRUE(job.ok()) << job.status();
  auto dpn = Trainer::Create(*job, world_);
  ASSERT_TRUE(dpn.ok()) << dpn.status();
  auto loss = (*dpn)->Evaluate();
  ASSERT_TRUE(loss.ok()) << loss.status();
  // A second pass starts from the first validation sample again.
  auto again = (*dpn)->Evaluate();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*loss, *again);
  if (world_->rank() != 0) return;

  auto one_job = testing::JobFromText(
      kJob, dir_, {val, absl::StrCat("logging.eval_batches=", kEvalBatches * dp)});
  ASSERT_TRUE(one_job.ok()) << one_job.status();
  auto dp1 = Trainer::Create(*one_job, World::Self());
  ASSERT_TRUE(dp1.ok()) << dp1.status();
  auto want = (*dp1)->Evaluate();
  ASSERT_TRUE(want.ok()) << want.status();
  // A fresh model: about ln(257) = 5.55 per token.
  EXPECT_GT(*want, 4.5);
  EXPECT_LT(*want, 6.5);
  EXPECT_NEAR(*loss, *want, 1e-5 * *want) << "dp " << dp << " vs one rank";
}

// A pipeline whose shape cannot run is refused by Create before anything is allocated, naming
// the field (pipeline training itself is proved in pipeline_train_test).
TEST_F(DataParallelTrainTest, BadPipelineShapeIsRefused) {
  if (world_->size() != 2) GTEST_SKIP() << "checked in the 2-rank run";
  auto job = testing::JobFromText(kJob, dir_, {"parallel.pp=2", "parallel.stage_layers=[1,2]"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, world_);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), "parallel.stage_layers sums to 3"))
      << t.status();
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
