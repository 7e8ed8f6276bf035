// "Layout does not change the math" for pipeline parallelism: for the layouts that fill the
// world this binary runs in (ctest runs it at 2, 4 and 8 ranks), GPT-2 (tied embeddings) and
// LLaMA tiny models train 5 steps of several micro-batches and must match a 1-rank run of the
// same job to 1e-5 relative: losses and gradient norms step by step (every rank logs the same
// loss), and the final weights gathered over the tensor and pipeline groups. Layouts:
//   2 ranks: pp 2 with 1F1B, GPipe, interleaved (2 virtual stages), uneven stage_layers [1, 3],
//            and 1F1B with selective and with full activation recomputation;
//   4 ranks: pp 4; dp 2 x pp 2 with the distributed optimizer; tp 2 x pp 2 with sequence
//            parallelism; pp 2 interleaved over tp 2;
//   ZERO_BUBBLE (B and W split, W deferred): at 2 ranks pp 2 (also with selective and with
//            full recomputation); at 4 pp 4, dp 2 x pp 2 with the distributed optimizer, tp 2 x
//            pp 2 with sequence parallelism; at 8 dp 2 x tp 2 x pp 2 with both;
//   8 ranks: dp 2 x tp 2 x pp 2 with sequence parallelism and the distributed optimizer, 1F1B
//            and interleaved.
// The last stage's copy of the tied embedding must stay bitwise equal to the first stage's, and
// validation and sampling, which also run through the pipeline, give the 1-rank results.
// At 2 and 4 ranks, the activation memory of 1F1B and ZERO_BUBBLE at pp = ranks is what the
// memory estimate counts per stage (ActivationMemoryIsWhatTheEstimateCounts).
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "job/job_layout.h"
#include "job/memory_estimate.h"
#include "train/trainer.h"
#include "model/gpt_params.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"

namespace loom {
namespace {

constexpr int kSteps = 5;

struct Layout {
  int dp = 1, tp = 1, pp = 1, v = 1;
  std::string schedule = "ONE_F_ONE_B";
  std::string stage_layers;  // e.g. "[1, 3]"
  bool sp = false, zero = false;
  std::string recompute = "NONE";
};

std::string Job(bool llama, const Layout& l, int pad_multiple) {
  const std::string model =
      llama ? "family: LLAMA layers: 4 heads: 8 kv_heads: 4 hidden: 32 vocab: 257 max_seq: 32"
            : "family: GPT2 layers: 4 heads: 4 hidden: 32 vocab: 257 max_seq: 32";
  std::string parallel = absl::StrCat(
      "micro_batch_size: 2 global_batch_size: 16 tp: ", l.tp, " pp: ", l.pp,
      " virtual_stages: ", l.v, " schedule: ", l.schedule,
      " sequence_parallel: ", l.sp ? "true" : "false",
      " distributed_optimizer: ", l.zero ? "true" : "false", " recompute: ", l.recompute,
      " grad_bucket_mb: 0.01");
  if (!l.stage_layers.empty()) absl::StrAppend(&parallel, " stage_layers: ", l.stage_layers);
  return absl::StrCat("model { ", model, " vocab_pad_multiple: ", pad_multiple, " }\n",
                      "parallel { ", parallel, " }\n",
                      R"(optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 decay_style: COSINE min_lr: 0.001 total_steps: 6 }
data { train: "$DIR/train_*.bin" val: "$DIR/train_*.bin" seq_len: 32 }
logging { interval: 1 eval_batches: 2 }
runtime { backend: CPU seed: 7 }
)");
}

struct TrainRun : testing::TrainRun {
  float val_loss = 0;           // Evaluate() after training (through the pipeline)
  std::vector<int32_t> sample;  // Sample() after training (through the pipeline)
};

// kSteps steps of the job, then validation and sampling through the trained pipeline.
TrainRun Train(const JobConfig& job, World* world) {
  TrainRun run;
  std::unique_ptr<Trainer> t;
  static_cast<testing::TrainRun&>(run) = testing::TrainSteps(job, world, kSteps, &t);
  if (t == nullptr || static_cast<int>(run.losses.size()) != kSteps) return run;
  auto val = t->Evaluate();
  EXPECT_TRUE(val.ok()) << val.status();
  if (val.ok()) run.val_loss = *val;
  auto sample = t->Sample({'T', 'h', 'e'}, 6);
  EXPECT_TRUE(sample.ok()) << sample.status();
  if (sample.ok()) run.sample = *sample;
  return run;
}

// dp > 1 replicas evaluate other validation batches than one rank does (each its share), so the
// validation loss is compared at dp == 1 only (data_parallel_train_test covers dp).
void ExpectSame(const TrainRun& got, const TrainRun& ref, const std::string& what, int dp) {
  testing::ExpectSameTraining(got, ref, what);
  if (dp == 1) {
    EXPECT_NEAR(got.val_loss, ref.val_loss, 1e-5 * std::fabs(ref.val_loss))
        << what << ": validation loss";
  }
  EXPECT_EQ(got.sample, ref.sample) << what << ": sampled tokens";
}

std::vector<Layout> LayoutsFor(int n) {
  std::vector<Layout> out;
  auto add = [&out](Layout l) { out.push_back(l); };
  if (n == 2) {
    add({.pp = 2});
    add({.pp = 2, .schedule = "GPIPE"});
    add({.pp = 2, .v = 2, .schedule = "INTERLEAVED"});
    add({.pp = 2, .stage_layers = "[1, 3]"});
    add({.pp = 2, .recompute = "SELECTIVE"});
    add({.pp = 2, .recompute = "FULL"});
    add({.pp = 2, .schedule = "ZERO_BUBBLE"});
    add({.pp = 2, .schedule = "ZERO_BUBBLE", .recompute = "SELECTIVE"});
    add({.pp = 2, .schedule = "ZERO_BUBBLE", .recompute = "FULL"});
  } else if (n == 4) {
    add({.pp = 4});
    add({.dp = 2, .pp = 2, .zero = true});
    add({.tp = 2, .pp = 2, .sp = true});
    add({.tp = 2, .pp = 2, .v = 2, .schedule = "INTERLEAVED"});
    add({.pp = 4, .schedule = "ZERO_BUBBLE"});
    add({.dp = 2, .pp = 2, .schedule = "ZERO_BUBBLE", .zero = true});
    add({.tp = 2, .pp = 2, .schedule = "ZERO_BUBBLE", .sp = true});
  } else if (n == 8) {
    add({.dp = 2, .tp = 2, .pp = 2, .sp = true, .zero = true});
    add({.dp = 2, .tp = 2, .pp = 2, .v = 2, .schedule = "INTERLEAVED", .sp = true,
         .zero = true});
    add({.dp = 2, .tp = 2, .pp = 2, .schedule = "ZERO_BUBBLE", .sp = true, .zero = true});
  }
  return out;
}

std::string Describe(const Layout& l) {
  return absl::StrCat("dp ", l.dp, " tp ", l.tp, " pp ", l.pp, " ", l.schedule,
                      l.v > 1 ? absl::StrCat(" v ", l.v) : "",
                      l.stage_layers.empty() ? "" : " stage_layers " + l.stage_layers,
                      l.sp ? " +SP" : "", l.zero ? " +ZeRO" : "",
                      l.recompute != "NONE" ? " recompute " + l.recompute : "");
}

TEST(PipelineTrainTest, EveryLayoutMatchesOneRank) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  world->state()->timeout = absl::Seconds(60);
  const int n = world->size();
  const std::vector<Layout> layouts = LayoutsFor(n);
  ASSERT_FALSE(layouts.empty()) << "no pipeline layouts for " << n << " ranks (run at 2, 4, 8)";
  const testing::ScopedTempDir tmp(absl::StrCat("pp_rank", world->rank()));
  const std::string dir = tmp.path();
  testing::WriteTextShard(dir + "/train_000.bin", "the quick brown fox jumps over the lazy dog.",
                          80);
  constexpr int kPad = 8;
  for (bool llama : {false, true}) {
    for (const Layout& l : layouts) {
      ASSERT_EQ(l.dp * l.tp * l.pp, n);
      // The 1-rank reference pads the vocabulary as the tp run does (to kPad * tp).
      auto ref_job = testing::JobFromText(Job(llama, Layout{}, kPad * l.tp), dir);
      ASSERT_TRUE(ref_job.ok()) << ref_job.status();
      const TrainRun ref = Train(*ref_job, World::Self());
      const std::string what = absl::StrCat(llama ? "LLaMA " : "GPT-2 ", Describe(l));
      auto job = testing::JobFromText(Job(llama, l, kPad), dir);
      ASSERT_TRUE(job.ok()) << what << ": " << job.status();
      const TrainRun got = Train(*job, world);
      ExpectSame(got, ref, what, l.dp);
      if (world->rank() == 0) std::cout << what << ": matches 1 rank" << std::endl;
    }
  }
}

// Activation memory of 1F1B and ZERO_BUBBLE at pp = the world size (2 and 4 ranks, GPT-2): after
// a step every rank holds exactly the activations the memory estimate gives its stage (the
// slots the simulator counts in flight, each as the model allocates it), and the allocator's
// peak is within 15% of the estimate's total for the stage. ZERO_BUBBLE's W keeps nothing
// beyond the plain slots: its first stage holds exactly 1F1B's first stage's activations (the
// 1F1B peak of uniform stages), and no stage without the head holds more than that; the head's
// stage holds as many slots as the others (1F1B's holds one), plus the head's scratch.
TEST(PipelineTrainTest, ActivationMemoryIsWhatTheEstimateCounts) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  world->state()->timeout = absl::Seconds(60);
  const int n = world->size(), rank = world->rank();
  if (n != 2 && n != 4) GTEST_SKIP() << "runs at 2 and 4 ranks";
  const testing::ScopedTempDir tmp(absl::StrCat("pp_mem_rank", rank));
  const std::string dir = tmp.path();
  testing::WriteTextShard(dir + "/train_000.bin", "the quick brown fox jumps over the lazy dog.",
                          80);
  std::map<std::string, std::vector<MemoryEstimate>> est;
  for (const char* schedule : {"ONE_F_ONE_B", "ZERO_BUBBLE"}) {
    SCOPED_TRACE(schedule);
    auto job = testing::JobFromText(Job(false, {.pp = n, .schedule = schedule}, 8), dir);
    ASSERT_TRUE(job.ok()) << job.status();
    auto layout = JobLayout::Create(*job, n);
    ASSERT_TRUE(layout.ok()) << layout.status();
    auto stages = EstimateMemoryPerStage(*layout);
    ASSERT_TRUE(stages.ok()) << stages.status();
    ASSERT_EQ(static_cast<int>(stages->size()), n);
    est[schedule] = *stages;
    const MemoryEstimate& mine = (*stages)[rank];  // dp = tp = 1: rank r is stage r
    CachingAllocator& alloc = CpuDevice()->allocator();
    alloc.EmptyCache();
    alloc.ResetPeak();
    const int64_t before = static_cast<int64_t>(alloc.stats().live_bytes);
    {
      auto t = Trainer::Create(*job, world);
      ASSERT_TRUE(t.ok()) << t.status();
      ASSERT_TRUE((*t)->Step().ok());
      EXPECT_EQ((*t)->model().activation_bytes(), mine.activations) << "stage " << rank;
      EXPECT_EQ((*t)->model().slots_allocated(), mine.micro_batches_in_flight) << "stage " << rank;
    }
    const int64_t peak = static_cast<int64_t>(alloc.stats().peak_bytes) - before;
    EXPECT_NEAR(static_cast<double>(mine.total), static_cast<double>(peak), 0.15 * peak)
        << "stage " << rank << ": estimate " << mine.total << " bytes, allocator peak " << peak
        << "\n"
        << FormatMemoryEstimate(mine, "  ");
  }
  const auto& one = est["ONE_F_ONE_B"];
  const auto& zb = est["ZERO_BUBBLE"];
  EXPECT_EQ(zb[0].weight_grad_buffers, 0);
  EXPECT_EQ(zb[0].activations, one[0].activations);
  EXPECT_EQ(zb[0].micro_batches_in_flight, one[0].micro_batches_in_flight);
  for (int s = 1; s + 1 < n; ++s) EXPECT_LE(zb[s].activations, one[0].activations) << s;
  if (rank == 0) {
    std::cout << "pp " << n << " activations (bytes) per stage, 1F1B / ZERO_BUBBLE:";
    for (int s = 0; s < n; ++s) std::cout << " " << one[s].activations << "/" << zb[s].activations;
    std::cout << std::endl;
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
