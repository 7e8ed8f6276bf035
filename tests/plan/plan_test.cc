// The layout planner (plan/plan.h) on a small known case: every layout it lists is valid,
// its memory is the trainer's own estimate for that layout, the step-time terms are the
// documented formulas (checked by hand for one layout), the order follows the predicted time
// among the layouts that fit, and the levers move the way they must (recomputation trades time
// for memory, more micro-batches shrink the bubble, a slow inter-node link pushes dp-heavy
// layouts down). `loom plan` refuses bad flags naming them.
#include "plan/plan.h"

#include <cmath>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "job/config.h"
#include "launcher/command.h"
#include "model/gpt_config.h"
#include "runtime/files.h"
#include "tests/train/job_testing.h"

namespace loom {
namespace {

constexpr char kJob[] = R"(
model { family: GPT2 layers: 4 heads: 4 hidden: 64 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 1 global_batch_size: 16 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 10 }
data { train: "unused" seq_len: 32 }
runtime { backend: CPU }
)";

PlanMachine SmallMachine() {
  PlanMachine m;
  m.gpus = 4;
  m.gpus_per_node = 2;
  m.memory_gib = 4;
  m.peak_tflops = 0.1;
  m.efficiency = 0.5;  // 0.05 TFLOP/s achievable
  m.intra_node_gbps = 1000;
  m.inter_node_gbps = 10;
  return m;
}

const PlannedLayout* Find(const std::vector<PlannedLayout>& plan, const std::string& name) {
  for (const PlannedLayout& l : plan) {
    if (l.Name() == name) return &l;
  }
  return nullptr;
}

// Without cp and ZERO_BUBBLE, so the layouts and figures here stay few (plan_model_test covers
// those).
PlanSearch TrainerSearch() {
  PlanSearch s;
  s.max_cp = 1;
  s.zero_bubble = false;
  return s;
}

TEST(PlanTest, LayoutsAreValidWithTheTrainersMemoryEstimateAndRanked) {
  auto job = testing::JobFromText(kJob, "");
  ASSERT_TRUE(job.ok()) << job.status();
  auto plan = PlanLayouts(*job, SmallMachine(), TrainerSearch());
  ASSERT_TRUE(plan.ok()) << plan.status();
  // tp in {1, 2} (heads 4, 2 GPUs a node), pp in {1, 2, 4} with dp = 4 / (tp * pp), virtual
  // stages dividing the 4 layers, 5 micro-batch sizes (dividing 16 / dp), 3 recomputations,
  // zero1 where dp > 1: enumerated exactly once each.
  std::map<std::string, int> seen;
  for (const PlannedLayout& l : *plan) ++seen[l.Name()];
  for (const auto& [name, n] : seen) EXPECT_EQ(n, 1) << name;
  EXPECT_TRUE(Find(*plan, "dp4 tp1 pp1 v1 mb4 none zero1"));
  EXPECT_TRUE(Find(*plan, "dp1 tp2 pp2 v2 mb1 full"));
  EXPECT_FALSE(Find(*plan, "dp1 tp4 pp1 v1 mb1 none")) << "tp 4 spans two 2-GPU nodes";
  EXPECT_FALSE(Find(*plan, "dp4 tp1 pp1 v1 mb8 none")) << "16 sequences = 4 ranks x 8 x 0.5";
  for (const PlannedLayout& l : *plan) {
    const JobConfig with = WithLayout(*job, l);
    EXPECT_TRUE(ConfigProblems(with, 4).empty()) << l.Name();
    auto e = EstimateMemoryPerRank(with, l.degrees);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(l.memory.total, e->total) << l.Name();
    EXPECT_TRUE(l.fits) << l.Name() << " needs " << l.memory.total << " bytes";
  }
  for (size_t i = 1; i < plan->size(); ++i) {
    EXPECT_LE((*plan)[i - 1].time.total(), (*plan)[i].time.total())
        << (*plan)[i - 1].Name() << " ranked before " << (*plan)[i].Name();
  }
}

TEST(PlanTest, StepTimeTermsFollowTheFormulas) {
  auto job = testing::JobFromText(kJob, "");
  ASSERT_TRUE(job.ok()) << job.status();
  const PlanMachine m = SmallMachine();
  auto plan = PlanLayouts(*job, m, TrainerSearch());
  ASSERT_TRUE(plan.ok()) << plan.status();
  const GptConfig g = GptConfigFromJob(*job);
  const double tokens = 16.0 * 32;
  const double flops = tokens * TrainingFlopsPerToken(g, ParameterCount(job->model()), 32);

  // dp 4 over two nodes: compute split 4 ways, the fp32 gradients of every parameter
  // all-reduced over the 10 Gbit/s link beside the one micro-batch's backward (2/3 of its
  // compute), the last 25 MiB bucket (here: all of them) exposed at least.
  const PlannedLayout* dp4 = Find(*plan, "dp4 tp1 pp1 v1 mb4 none");
  ASSERT_NE(dp4, nullptr);
  EXPECT_NEAR(dp4->time.compute, flops / (4 * 0.05e12), 1e-12 * dp4->time.compute);
  const double reduction = 2.0 * 3 / 4 * dp4->memory.parameters * 4 / (10e9 / 8);
  EXPECT_DOUBLE_EQ(dp4->time.dp_comm, std::max(reduction, reduction - 2.0 / 3 * dp4->time.compute));
  EXPECT_EQ(dp4->time.tp_comm, 0);
  EXPECT_EQ(dp4->time.pp_comm, 0);
  EXPECT_EQ(dp4->time.bubble, 0);
  EXPECT_DOUBLE_EQ(dp4->tokens_per_s, tokens / dp4->time.total());
  // MFU is against the peak (0.1 TFLOP/s), not the achievable 0.05.
  EXPECT_DOUBLE_EQ(dp4->mfu, dp4->tokens_per_s * flops / tokens / (4 * 0.1e12));

  // tp 2 inside a node: 4 all-reduces of B x T x C fp32 per layer and micro-batch.
  const PlannedLayout* tp2 = Find(*plan, "dp2 tp2 pp1 v1 mb2 none");
  ASSERT_NE(tp2, nullptr);
  const double act = 2.0 * 32 * 64 * 4;
  EXPECT_DOUBLE_EQ(tp2->time.tp_comm, 4 * 4 * 4 * (2.0 * 1 / 2 * act / (1000e9 / 8)));

  // pp 2: bubble = (compute + tp) * (p - 1) / (v * m): the stage's busy time.
  const PlannedLayout* pp2 = Find(*plan, "dp1 tp2 pp2 v1 mb2 none");
  const PlannedLayout* pp2v2 = Find(*plan, "dp1 tp2 pp2 v2 mb2 none");
  ASSERT_NE(pp2, nullptr);
  ASSERT_NE(pp2v2, nullptr);
  EXPECT_EQ(pp2->micro_batches, 8);
  EXPECT_DOUBLE_EQ(pp2->time.bubble, (pp2->time.compute + pp2->time.tp_comm) * 1 / 8);
  EXPECT_DOUBLE_EQ(pp2v2->time.bubble, pp2->time.bubble / 2) << "interleaving halves it";
  const PlannedLayout* pp2mb8 = Find(*plan, "dp1 tp2 pp2 v1 mb8 none");
  ASSERT_NE(pp2mb8, nullptr);
  EXPECT_GT(pp2mb8->time.bubble, pp2->time.bubble) << "fewer micro-batches, more bubble";

  // Recomputation: slower, smaller.
  const PlannedLayout* full = Find(*plan, "dp4 tp1 pp1 v1 mb4 full");
  const PlannedLayout* sel = Find(*plan, "dp4 tp1 pp1 v1 mb4 selective");
  ASSERT_NE(full, nullptr);
  ASSERT_NE(sel, nullptr);
  // The layers' forward again; the head (a large part of this tiny model) is not recomputed.
  EXPECT_GT(full->time.compute, dp4->time.compute * 1.2);
  EXPECT_LT(full->time.compute, dp4->time.compute * 4 / 3);
  EXPECT_GT(sel->time.compute, dp4->time.compute);
  EXPECT_LT(sel->time.compute, full->time.compute);
  EXPECT_LT(full->memory.activations, sel->memory.activations);
  EXPECT_LT(sel->memory.activations, dp4->memory.activations);
  // ZeRO-1 shards the moments over dp.
  const PlannedLayout* zero = Find(*plan, "dp4 tp1 pp1 v1 mb4 none zero1");
  ASSERT_NE(zero, nullptr);
  EXPECT_EQ(zero->memory.optimizer_moments * 4, dp4->memory.optimizer_moments);
}

TEST(PlanTest, LinksAndMemoryDecideTheOrder) {
  auto job = testing::JobFromText(kJob, "");
  ASSERT_TRUE(job.ok()) << job.status();
  PlanMachine m = SmallMachine();
  // A network between nodes so slow that the reduction outlasts the backward it runs beside:
  // the best layout keeps the gradient reduction off it.
  m.inter_node_gbps = 0.1;
  auto slow = PlanLayouts(*job, m, TrainerSearch());
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_EQ(slow->front().degrees.dp * slow->front().degrees.tp <= m.gpus_per_node, true)
      << "best on a slow network: " << slow->front().Name();
  // With one node of 4 GPUs and fast links pure data parallelism wins (no bubble, no tp).
  m.gpus_per_node = 4;
  m.inter_node_gbps = m.intra_node_gbps = 1e6;
  auto fast = PlanLayouts(*job, m, TrainerSearch());
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(fast->front().degrees.dp, 4) << fast->front().Name();
  EXPECT_EQ(fast->front().degrees.recompute, Recompute::kNone) << fast->front().Name();
  // Memory so tight that only recomputing layouts fit: they rank first, the rest are marked.
  const PlannedLayout* none = Find(*fast, "dp4 tp1 pp1 v1 mb4 none");
  const PlannedLayout* full = Find(*fast, "dp4 tp1 pp1 v1 mb4 full");
  ASSERT_NE(none, nullptr);
  ASSERT_NE(full, nullptr);
  m.memory_gib = (full->memory.total + none->reserve + 1) / 1073741824.0;
  auto tight = PlanLayouts(*job, m, TrainerSearch());
  ASSERT_TRUE(tight.ok()) << tight.status();
  const PlannedLayout* tight_none = Find(*tight, "dp4 tp1 pp1 v1 mb4 none");
  ASSERT_NE(tight_none, nullptr);
  EXPECT_FALSE(tight_none->fits);
  bool seen_unfit = false;
  for (const PlannedLayout& l : *tight) {
    if (!l.fits) seen_unfit = true;
    EXPECT_FALSE(seen_unfit && l.fits) << l.Name() << " fits but is ranked after one that does not";
  }
}

absl::Status RunPlan(const std::vector<std::string>& args) {
  auto it = CommandRegistry().find("plan");
  if (it == CommandRegistry().end()) return absl::NotFoundError("plan not registered");
  ::testing::internal::CaptureStdout();
  absl::Status s = it->second.run(args);
  ::testing::internal::GetCapturedStdout();
  return s;
}

TEST(PlanTest, CommandRefusesBadFlagsNamingThem) {
  const testing::ScopedTempDir tmp("plan_cli");
  const std::string dir = tmp.path();
  const std::string file = dir + "/job.textproto";
  ASSERT_TRUE(AtomicWriteFile(file, kJob).ok());
  EXPECT_TRUE(
      RunPlan({"--config", file, "--gpus", "4", "--gpus-per-node", "2", "--csv", dir + "/plan.csv"})
          .ok());
  auto csv = ReadFile(dir + "/plan.csv");
  ASSERT_TRUE(csv.ok()) << csv.status();
  EXPECT_TRUE(absl::StartsWith(*csv, "rank,dp,tp,pp,")) << *csv;
  absl::Status s = RunPlan({"--config", file});
  EXPECT_TRUE(absl::StrContains(s.message(), "--gpus is required")) << s;
  s = RunPlan({"--config", file, "--gpus", "4", "--gpu-tflops", "fast"});
  EXPECT_TRUE(absl::StrContains(s.message(), "--gpu-tflops expects a number")) << s;
  s = RunPlan({"--config", file, "--gpus", "4", "--inter-node-gbps", "0"});
  EXPECT_TRUE(absl::StrContains(s.message(), "--inter-node-gbps must be a positive")) << s;
  s = RunPlan({"--config", file, "--gpus", "3", "--uneven-stages=false", "--set", "model.heads=4"});
  // 3 GPUs: tp 1 (heads 4 do not split 3 ways), dp 3 does not divide 16 sequences, pp 3 does
  // not divide 4 layers (uneven stages not tried), cp 3 does not divide the sequence in 6:
  // nothing is valid, and the data-parallel layout's problem is named.
  EXPECT_TRUE(absl::StrContains(s.message(), "no valid layout for 3 GPUs")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "global_batch_size")) << s;
  // --job-out writes only a layout that fits.
  s = RunPlan({"--config", file, "--gpus", "4", "--gpu-memory-gib", "0.001", "--job-out",
               dir + "/job_out.textproto"});
  EXPECT_TRUE(absl::StrContains(s.message(), "--job-out " + dir +
                                                 "/job_out.textproto: no layout "
                                                 "fits in 0.001 GiB"))
      << s;
}

}  // namespace
}  // namespace loom
