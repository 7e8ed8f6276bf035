// "Layout does not change the math" for context parallelism (ring attention, parallel.cp): a
// tiny GPT-2 (learned positions) and a tiny LLaMA with grouped-query attention (RoPE) train a few
// steps on every cp layout that fills the world this binary runs in, and must match a 1-rank run
// of the same job to 1e-5 relative (losses and gradient norms step by step, the final weights):
//   2 ranks: cp 2, on the CPU and on the test device (device tensors, the ring's transfers on
//            the communication stream ordered by events: the GPU's control path);
//   4 ranks: cp 4, cp 2 x tp 2 with sequence parallelism, cp 2 x pp 2 (1F1B, and ZERO_BUBBLE:
//            the ring's backward split into B and deferred W), cp 2 x dp 2 with the
//            distributed optimizer (ZeRO-1 sharded over dp x cp).
// Each rank holds chunks r and 2cp-1-r of every sequence at their global positions, attention
// merges every rank's K/V block by log-sum-exp, dK/dV travel back around the ring, and the
// gradients are averaged over dp x cp: a wrong chunk, position, merge or reduction moves the
// losses far beyond 1e-5.
// Fine-tuning data (loss masks, packed documents) on the same layouts, and sampling by the cp
// group, have their own test below.
#include <mpi.h>

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "gtest/gtest.h"
#include "parallel/world.h"
#include "tests/parallel/layout_compare.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr int kSteps = 3;

struct Layout {
  int cp, tp, pp, dp;
  bool sp, zero;
  bool test_device = false;  // runtime.backend TEST: the GPU's path (device tensors, streams)
  bool zero_bubble = false;  // parallel.schedule ZERO_BUBBLE (B and W split) instead of 1F1B
  std::string Name() const {
    return absl::StrCat(test_device ? "test device: " : "", "cp ", cp,
                        tp > 1 ? absl::StrCat(" x tp ", tp, sp ? " (SP)" : "") : "",
                        pp > 1 ? absl::StrCat(" x pp ", pp, zero_bubble ? " (ZB)" : "") : "",
                        dp > 1 ? absl::StrCat(" x dp ", dp, zero ? " (ZeRO-1)" : "") : "");
  }
};

std::string Job(bool llama, const Layout& l, int pad_multiple, const std::string& extra = "") {
  const std::string model =
      llama ? "family: LLAMA layers: 2 heads: 8 kv_heads: 2 hidden: 32 vocab: 257 max_seq: 32"
            : "family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32";
  return absl::StrCat("model { ", model, " vocab_pad_multiple: ", pad_multiple, " }\n",
                      "parallel { micro_batch_size: 2 global_batch_size: 8 tp: ", l.tp,
                      " cp: ", l.cp, " pp: ", l.pp, " sequence_parallel: ", l.sp ? "true" : "false",
                      " distributed_optimizer: ", l.zero ? "true" : "false",
                      " grad_bucket_mb: 0.01",
                      l.zero_bubble ? " schedule: ZERO_BUBBLE" : "", " }\n",
                      R"(optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 1 decay_style: COSINE min_lr: 0.001 total_steps: 4 }
data { train: "$DIR/train_*.bin" seq_len: 32 }
logging { interval: 1 }
runtime { seed: 7 backend: )",
                      l.test_device ? "TEST" : "CPU", " }\n", extra);
}

TEST(ContextParallelTrainTest, EveryCpLayoutMatchesOneRank) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  world->state()->timeout = absl::Seconds(60);
  const int n = world->size();
  const testing::ScopedTempDir tmp(absl::StrCat("cp_rank", world->rank()));
  const std::string dir = tmp.path();
  testing::WriteTextShard(dir + "/train_000.bin",
                          "context parallel ring attention splits each sequence.", 80);
  std::vector<Layout> layouts;
  if (n == 2) layouts = {{2, 1, 1, 1, false, false}, {2, 1, 1, 1, false, false, true}};
  if (n == 4) {
    layouts = {{4, 1, 1, 1, false, false},
               {2, 2, 1, 1, true, false},
               {2, 1, 2, 1, false, false},
               {2, 1, 2, 1, false, false, false, /*zero_bubble=*/true},
               {2, 1, 1, 2, false, true}};
  }
  ASSERT_FALSE(layouts.empty()) << "run this test at 2 or 4 ranks, not " << n;
  constexpr int kPad = 8;
  for (bool llama : {false, true}) {
    for (const Layout& l : layouts) {
      // The 1-rank reference pads the vocabulary as the tp run does (to kPad * tp).
      auto ref_job = testing::JobFromText(Job(llama, {1, 1, 1, 1, false, false}, kPad * l.tp), dir);
      ASSERT_TRUE(ref_job.ok()) << ref_job.status();
      const testing::TrainRun ref = testing::TrainSteps(*ref_job, World::Self(), kSteps);
      const std::string what = absl::StrCat(llama ? "LLaMA (GQA)" : "GPT-2", " ", l.Name());
      auto job = testing::JobFromText(Job(llama, l, kPad), dir);
      ASSERT_TRUE(job.ok()) << job.status();
      const testing::TrainRun got = testing::TrainSteps(*job, world, kSteps);
      testing::ExpectSameTraining(got, ref, what);
      if (world->rank() == 0) std::cout << what << ": compared with 1 rank" << std::endl;
    }
  }
}

// Fine-tuning data under context parallelism: packed short documents (several per row, many
// crossing the chunk boundaries, so a query's document begins on another rank's chunk) with
// loss masks whose counted targets differ between chunks, micro-batches and replicas. The loss
// is the mean over the global batch's counted targets (the count summed over dp x cp), and
// attention stays inside each document around the ring: the losses, gradient norms and weights
// must match one rank to 1e-5, the masked validation loss too (where the replicas evaluate the
// reference's batches), and sampling (what logging.sample_interval runs) by the cp group must
// give the 1-rank run's tokens exactly, with the window's positions on several ranks' chunks.
//   2 ranks: cp 2 on the CPU and on the test device;
//   4 ranks: cp 2 x dp 2 (ZeRO-1), cp 4, cp 2 x tp 2 (SP; the vocab-parallel cross-entropy and
//            sampling over vocab slices), cp 2 x pp 2 (1F1B).
TEST(ContextParallelTrainTest, FineTuningDataMatchesOneRankAndSamplesTheSameText) {
  World* world = *World::Get();
  world->state()->timeout = absl::Seconds(60);
  const int n = world->size();
  const testing::ScopedTempDir tmp(absl::StrCat("cp_sft_rank", world->rank()));
  const std::string dir = tmp.path();
  testing::WriteSftShard(dir + "/train_000.bin", 200, /*short_lines=*/true);
  testing::WriteSftShard(dir + "/val_000.bin", 60, /*short_lines=*/true);
  std::vector<Layout> layouts;
  if (n == 2) layouts = {{2, 1, 1, 1, false, false}, {2, 1, 1, 1, false, false, true}};
  if (n == 4) {
    layouts = {{2, 1, 1, 2, false, true},
               {4, 1, 1, 1, false, false},
               {2, 2, 1, 1, true, false},
               {2, 1, 2, 1, false, false}};
  }
  ASSERT_FALSE(layouts.empty()) << "run this test at 2 or 4 ranks, not " << n;
  const std::vector<std::string> val = {absl::StrCat("data.val=", dir, "/val_*.bin"),
                                        "logging.eval_batches=2"};
  const std::vector<int32_t> prompt = {'7', '?'};
  constexpr int kSampleLength = 20;  // positions 0..21 of 32: on every rank, cp 2 and cp 4
  constexpr int kPad = 8;
  for (bool llama : {false, true}) {
    for (const Layout& l : layouts) {
      // The 1-rank reference pads the vocabulary as the tp run does (to kPad * tp).
      auto ref_job =
          testing::JobFromText(Job(llama, {1, 1, 1, 1, false, false}, kPad * l.tp), dir, val);
      ASSERT_TRUE(ref_job.ok()) << ref_job.status();
      std::unique_ptr<Trainer> ref_trainer;
      const testing::TrainRun ref =
          testing::TrainSteps(*ref_job, World::Self(), kSteps, &ref_trainer);
      ASSERT_TRUE(ref_trainer != nullptr);
      auto ref_val = ref_trainer->Evaluate();
      ASSERT_TRUE(ref_val.ok()) << ref_val.status();
      auto ref_sample = ref_trainer->Sample(prompt, kSampleLength);
      ASSERT_TRUE(ref_sample.ok()) << ref_sample.status();
      ASSERT_EQ(ref_sample->size(), static_cast<size_t>(kSampleLength));
      const std::string what =
          absl::StrCat(llama ? "LLaMA (GQA)" : "GPT-2", " fine-tuning data, ", l.Name());
      auto job = testing::JobFromText(Job(llama, l, kPad), dir, val);
      ASSERT_TRUE(job.ok()) << job.status();
      std::unique_ptr<Trainer> trainer;
      const testing::TrainRun got = testing::TrainSteps(*job, world, kSteps, &trainer);
      testing::ExpectSameTraining(got, ref, what);
      ASSERT_TRUE(trainer != nullptr);
      auto v = trainer->Evaluate();
      ASSERT_TRUE(v.ok()) << v.status();
      if (l.dp == 1) EXPECT_NEAR(*v, *ref_val, 1e-5 * *ref_val) << what << ": validation loss";
      auto sample = trainer->Sample(prompt, kSampleLength);
      ASSERT_TRUE(sample.ok()) << what << ": " << sample.status();
      EXPECT_EQ(*sample, *ref_sample) << what << ": sampled tokens";
      if (world->rank() == 0) std::cout << what << ": compared with 1 rank" << std::endl;
    }
  }
}

// Checkpoints of a cp layout: parameters are replicated over cp and ZeRO-1 shards them over
// dp x cp, so a cp 2 checkpoint resumes bit for bit on cp 2 and reshards onto one rank, whose
// next losses match the uninterrupted 1-rank run to 1e-5.
TEST(ContextParallelTrainTest, CheckpointResumesOnCpAndReshardsToOneRank) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  if (world->size() != 2) GTEST_SKIP() << "runs at 2 ranks";
  world->state()->timeout = absl::Seconds(60);
  constexpr int kStop = 2, kTotal = 4;
  // One directory for both ranks (checkpoints are shared): rank 0 owns it.
  std::optional<testing::ScopedTempDir> owner;
  std::string root;
  if (world->rank() == 0) {
    owner.emplace("cp_ckpt");
    root = owner->path();
  }
  int len = static_cast<int>(root.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  root.resize(len);
  MPI_Bcast(root.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (world->rank() == 0) {
    testing::WriteTextShard(root + "/train_000.bin",
                            "context parallel ring attention splits each sequence.", 80);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const Layout cp2{2, 1, 1, 1, false, true};
  auto job = [&](const Layout& l, const std::string& extra) {
    auto j = testing::JobFromText(Job(false, l, 8, extra), root);
    EXPECT_TRUE(j.ok()) << j.status();
    return *j;
  };
  const testing::TrainRun ref = testing::TrainSteps(job(cp2, ""), world, kTotal);
  const std::string ck = root + "/ck";
  {
    JobConfig j = job(cp2, absl::StrCat("checkpoint { dir: \"", ck, "\" }\n"));
    j.mutable_runtime()->set_stop_at_step(kStop);
    auto t = Trainer::Create(j, world);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Run().ok());
  }
  {
    // The manifest records the layout, cp included.
    auto latest = LatestCheckpoint(ck);
    ASSERT_TRUE(latest.ok() && latest->has_value()) << ck;
    auto reader = CheckpointReader::Open(**latest);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ((*reader)->manifest().layout().cp(), 2);
    EXPECT_EQ((*reader)->manifest().layout().world_size(), 2);
  }
  {
    auto t = Trainer::Create(job(cp2, absl::StrCat("checkpoint { dir: \"", ck, "\" }\n")), world);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->step(), kStop);
    const testing::TrainRun resumed = testing::Steps(**t, kTotal - kStop);
    ASSERT_EQ(resumed.losses.size(), static_cast<size_t>(kTotal - kStop));
    for (int i = 0; i < kTotal - kStop; ++i) {
      EXPECT_EQ(resumed.losses[i], ref.losses[kStop + i]) << "cp 2 resume, step " << kStop + i + 1;
    }
  }
  if (world->rank() == 0) {
    // cp 2 -> one rank: the same checkpoint on a 1-rank layout (no ZeRO) against a 1-rank run.
    const Layout one{1, 1, 1, 1, false, false};
    const testing::TrainRun ref_one = testing::TrainSteps(job(one, ""), World::Self(), kTotal);
    auto t = Trainer::Create(job(one, absl::StrCat("checkpoint { resume: \"", ck, "\" }\n")),
                             World::Self());
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->step(), kStop);
    const testing::TrainRun resumed = testing::Steps(**t, kTotal - kStop);
    ASSERT_EQ(resumed.losses.size(), static_cast<size_t>(kTotal - kStop));
    for (int i = 0; i < kTotal - kStop; ++i) {
      EXPECT_NEAR(resumed.losses[i], ref_one.losses[kStop + i], 1e-5 * ref_one.losses[kStop + i])
          << "cp 2 checkpoint resharded onto 1 rank, step " << kStop + i + 1;
    }
    std::cout << "cp 2 checkpoint: resumed bit for bit on cp 2, resharded onto 1 rank" << std::endl;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
