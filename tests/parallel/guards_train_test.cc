// The trainer's guards on a tp 2 x pp 2 job (4 ranks), where one model replica spans every rank
// and what one rank sees must still decide for all of them:
// - a non-finite gradient with a finite loss (LOOM_FAULT=nan_grad: one element, on the last
//   rank only; also on dp 2 x tp 2, where the other replica's norm stays finite): the step is
//   skipped on every rank, the weights stay those of the step before, and the next step trains
//   again;
// - a stop signal (a real SIGUSR1) reaching one rank only: every rank stops at the same step,
//   the checkpoint saved on the way out is that step and verifies, and a resume continues from
//   it; the same for the time limit (runtime.max_duration_s) as one rank alone sees it.
// Without 4 ranks the test says so and does nothing.
#include <mpi.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "checkpoint/checkpoint.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "train/stop_signal.h"
#include "train/trainer.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

// collective_timeout_s: ranks that disagree (a hang) end the test in seconds, not at ctest's
// timeout.
std::string Job(const std::string& extra = "", const std::string& layout = "tp: 2 pp: 2") {
  return absl::StrCat(R"(
model { family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32 vocab_pad_multiple: 8 }
parallel { micro_batch_size: 2 global_batch_size: 4 grad_bucket_mb: 0.01 )",
                      layout, R"( }
optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 1 decay_style: COSINE min_lr: 0.001 total_steps: 6 }
data { train: "$DIR/train_*.bin" seq_len: 32 }
logging { interval: 100 }
runtime { backend: CPU seed: 5 max_nonfinite_steps: 3 collective_timeout_s: 20 }
)",
                      extra);
}

class GuardsTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = World::Get();
    ASSERT_TRUE(w.ok());
    world_ = *w;
    if (world_->size() != 4) GTEST_SKIP() << "needs 4 ranks (tp 2 x pp 2), has " << world_->size();
    world_->state()->timeout = absl::Seconds(60);
    if (world_->rank() == 0) root_ = testing::FreshTempDir("guards_train");
    int len = static_cast<int>(root_.size());
    MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
    root_.resize(len);
    MPI_Bcast(root_.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (world_->rank() == 0) {
      ByteTokenizer tok;
      std::vector<uint16_t> ids;
      for (int i = 0; i < 40; ++i) {
        tok.Encode(absl::StrCat("line ", i, ": the quick brown fox jumps over the lazy dog. "),
                   &ids);
      }
      ASSERT_TRUE(WriteShard(root_ + "/train_000.bin", ids, ShardFormat::kLlmc).ok());
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }

  std::unique_ptr<Trainer> Make(const std::string& text,
                                const std::vector<std::string>& overrides = {}) {
    auto job = testing::JobFromText(text, root_, overrides);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return nullptr;
    auto t = Trainer::Create(*job, world_);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }

  // (min, max) of `v` over the world.
  std::pair<int64_t, int64_t> MinMax(int64_t v) {
    int64_t lo = 0, hi = 0;
    MPI_Allreduce(&v, &lo, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&v, &hi, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    return {lo, hi};
  }

  World* world_ = nullptr;
  std::string root_;
};

std::vector<float> Weights(Trainer& t) {
  auto w = GatherGlobalParams(t.model().layout(), t.model().params(), t.groups().tp());
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *w : std::vector<float>();
}

class NonFiniteGradientTest : public GuardsTrainTest,
                              public ::testing::WithParamInterface<std::string> {};

// tp 2 x pp 2: rank 3 is tp rank 1 of the last stage; dp 2 x tp 2: tp rank 1 of the second
// replica, whose gradient norm the first replica never sees (only the world's vote tells it).
TEST_P(NonFiniteGradientTest, OneElementOnOneRankSkipsTheStepOnEveryRank) {
  setenv("LOOM_FAULT", "nan_grad", 1);
  setenv("LOOM_FAULT_RANK", "3", 1);
  setenv("LOOM_FAULT_STEP", "2", 1);
  auto t = Make(Job("", GetParam()));
  unsetenv("LOOM_FAULT");
  unsetenv("LOOM_FAULT_RANK");
  unsetenv("LOOM_FAULT_STEP");
  ASSERT_NE(t, nullptr);
  SCOPED_TRACE(GetParam());
  auto first = t->Step();
  ASSERT_TRUE(first.ok()) << first.status();
  const std::vector<float> before = Weights(*t);
  auto loss = t->Step();  // the poisoned one
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_TRUE(std::isfinite(*loss)) << "the fault is in the gradient only";
  if (t->groups().coord().dp == 1 || GetParam().find("dp") == std::string::npos) {
    EXPECT_FALSE(std::isfinite(t->last_grad_norm())) << "the norm counts the poisoned element";
  }
  const std::vector<float> after = Weights(*t);
  ASSERT_EQ(after.size(), before.size());
  int64_t changed = 0, nonfinite = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    if (std::memcmp(&after[i], &before[i], 4) != 0) ++changed;
    if (!std::isfinite(after[i])) ++nonfinite;
  }
  EXPECT_EQ(changed, 0) << "rank " << world_->rank() << ": the skipped step changed " << changed
                        << " weight(s), " << nonfinite << " of them non-finite";
  EXPECT_EQ(MinMax(changed).second, 0) << "some rank applied the poisoned step";
  // The next step trains again, on every rank, with finite weights.
  auto next = t->Step();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(std::isfinite(*next));
  EXPECT_TRUE(std::isfinite(t->last_grad_norm()));
  const std::vector<float> later = Weights(*t);
  int64_t moved = 0;
  for (size_t i = 0; i < later.size(); ++i) {
    ASSERT_TRUE(std::isfinite(later[i])) << "weight " << i;
    moved += later[i] != after[i];
  }
  EXPECT_GT(moved, 0) << "the step after the skipped one did not train";
  EXPECT_EQ(t->step(), 3);
}

INSTANTIATE_TEST_SUITE_P(Layouts, NonFiniteGradientTest,
                         ::testing::Values("tp: 2 pp: 2", "dp: 2 tp: 2"));

TEST_F(GuardsTrainTest, StopSignalOnOneRankStopsEveryRankAtTheSameStep) {
  const std::string ck = root_ + "/ck";
  const std::string text = Job(absl::StrCat("checkpoint { dir: \"", ck, "\" }\n"));
  InstallStopSignalHandlers();
  ResetStopSignalForTesting();
  {
    auto t = Make(text);
    ASSERT_NE(t, nullptr);
    ASSERT_TRUE(t->Step().ok());
    ASSERT_TRUE(t->Step().ok());
    // The signal reaches the last rank alone, in the middle of the run.
    if (world_->rank() == 3) ASSERT_EQ(std::raise(SIGUSR1), 0);
    ASSERT_TRUE(t->Run().ok());
    const auto [lo, hi] = MinMax(t->step());
    EXPECT_EQ(lo, 2) << "a rank went past the step the signal arrived in";
    EXPECT_EQ(hi, 2) << "ranks stopped at different steps";
  }
  ResetStopSignalForTesting();
  MPI_Barrier(MPI_COMM_WORLD);
  auto latest = LatestCheckpoint(ck);
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ(fs::path(**latest).filename().string(), StepDirName(2));
  if (world_->rank() == 0) {
    auto reader = CheckpointReader::Open(**latest);
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto bytes = (*reader)->VerifyAll();
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ((*reader)->manifest().step(), 2);
  }
  auto t = Make(text);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->step(), 2);
  ASSERT_TRUE(t->Run().ok());
  EXPECT_EQ(t->step(), 6);
}

// runtime.max_duration_s on the last rank only (as when one rank's clock or start-up differs):
// its time is up after step 2, and every rank stops there with it.
TEST_F(GuardsTrainTest, TimeLimitSeenByOneRankStopsEveryRankAtTheSameStep) {
  const std::string ck = root_ + "/ck_time";
  std::vector<std::string> limit;
  if (world_->rank() == 3) limit.push_back("runtime.max_duration_s=2");
  auto t = Make(Job(absl::StrCat("checkpoint { dir: \"", ck, "\" }\n")), limit);
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(t->Step().ok());
  ASSERT_TRUE(t->Step().ok());
  if (world_->rank() == 3) absl::SleepFor(absl::Seconds(2.2));
  ASSERT_TRUE(t->Run().ok());
  const auto [lo, hi] = MinMax(t->step());
  EXPECT_EQ(lo, 2) << "a rank went past the step the time ran out in";
  EXPECT_EQ(hi, 2) << "ranks stopped at different steps";
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_->rank() == 0) {
    auto latest = LatestCheckpoint(ck);
    ASSERT_TRUE(latest.ok() && latest->has_value()) << latest.status();
    auto reader = CheckpointReader::Open(**latest);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ((*reader)->manifest().step(), 2);
    EXPECT_TRUE((*reader)->VerifyAll().ok());
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
