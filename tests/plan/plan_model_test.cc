// The planner's model beyond the basic enumeration (plan_test.cc): the uneven stage split and
// its enumeration, the overlap model (dp reduction beside backward with the last bucket
// exposed, ZeRO's all-gather, pipeline exchanges, the cp ring), ZERO_BUBBLE and cp as planner
// fields, MFU against the peak, GPU presets and calibration files; and two published-scale
// cases: the Llama-3-405B-shaped job plans a layout that fits on 16,384 80 GB GPUs (with a
// 128,256 vocabulary and no data), and a 1B model on 16 GPUs prefers pure data parallelism to
// pp 2 once the reduction overlaps backward.
#include <cmath>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "job/config.h"
#include "job/config_problems.h"
#include "job/config_text.h"
#include "job/memory_estimate.h"
#include "launcher/command.h"
#include "model/gpt_config.h"
#include "parallel/pipeline_simulator.h"
#include "plan/gpu_presets.h"
#include "plan/plan.h"
#include "plan/stage_split.h"
#include "runtime/files.h"
#include "tests/temp_dir.h"
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

PlanMachine Machine(int gpus, int per_node) {
  PlanMachine m;
  m.gpus = gpus;
  m.gpus_per_node = per_node;
  m.memory_gib = 4;
  m.peak_tflops = 0.1;
  m.efficiency = 0.5;
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

TEST(StageSplitTest, FewerLayersAtTheEndsWhenTheyDoNotDivide) {
  // Llama 3 405B: 126 layers over 16 stages, one fewer on the first and on the last.
  std::vector<int> llama(16, 8);
  llama.front() = llama.back() = 7;
  EXPECT_EQ(PlannerStageLayers(126, 16, 1), llama);
  EXPECT_EQ(FormatStageLayers(llama), "7,8*14,7");
  EXPECT_EQ(PlannerStageLayers(128, 16, 1), std::vector<int>(16, 8)) << "even stays even";
  EXPECT_EQ(FormatStageLayers(std::vector<int>(16, 8)), "8*16");
  EXPECT_EQ(PlannerStageLayers(4, 3, 1), (std::vector<int>{1, 2, 1}));
  EXPECT_EQ(PlannerStageLayers(10, 4, 1), (std::vector<int>{2, 3, 3, 2}));
  // Interleaved: chunks in model order, the first and last chunk of the model lighter.
  EXPECT_EQ(PlannerStageLayers(9, 2, 2), (std::vector<int>{2, 2, 3, 2}));
  EXPECT_EQ(PlannerStageLayers(3, 2, 2), std::vector<int>{}) << "more chunks than layers";
  for (int layers : {5, 7, 61, 126}) {
    for (int chunks : {2, 3, 4, 5}) {
      const std::vector<int> split = PlannerStageLayers(layers, chunks, 1);
      int sum = 0, lo = layers, hi = 0;
      for (int n : split) sum += n, lo = std::min(lo, n), hi = std::max(hi, n);
      EXPECT_EQ(sum, layers);
      EXPECT_LE(hi - lo, 1) << layers << " over " << chunks;
      EXPECT_LE(split.front(), split[chunks / 2]) << "the ends are never heavier";
    }
  }
}

TEST(PlanModelTest, UnevenStagesAreEnumeratedAndWrittenAsStageLayers) {
  auto job = testing::JobFromText(kJob, "");
  ASSERT_TRUE(job.ok()) << job.status();
  // 3 GPUs and 4 layers: pp 3 exists only with an uneven split.
  auto plan = PlanLayouts(*job, Machine(3, 3));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlannedLayout* pp3 = Find(*plan, "dp1 tp1 pp3 v1 mb1 none");
  ASSERT_NE(pp3, nullptr);
  EXPECT_TRUE(pp3->uneven);
  EXPECT_EQ(pp3->chunk_layers, (std::vector<int>{1, 2, 1}));
  const JobConfig with = WithLayout(*job, *pp3);
  ASSERT_EQ(with.parallel().stage_layers_size(), 3);
  EXPECT_EQ(with.parallel().stage_layers(1), 2);
  EXPECT_TRUE(ConfigProblems(with, 3).empty()) << "the trainer takes the planned split";
  auto e = EstimateMemoryPerRank(with, pp3->degrees);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(pp3->memory.total, e->total) << "priced on the trainer's own estimate";
  // The slowest stage sets the pace: 2 layers (the middle) or 1 layer plus the head (the last),
  // never the even third of the work.
  const GptConfig g = GptConfigFromJob(*job);
  const double flops = 16.0 * 32 * TrainingFlopsPerToken(g, ParameterCount(job->model()), 32);
  EXPECT_GT(pp3->time.compute, flops / (3 * 0.05e12));
  // Without uneven stages there is no pp 3, and so no layout at all on 3 GPUs.
  PlanSearch even;
  even.uneven_stages = false;
  auto plan_even = PlanLayouts(*job, Machine(3, 3), even);
  EXPECT_TRUE(absl::StrContains(plan_even.status().message(), "no valid layout for 3 GPUs"))
      << plan_even.status();
}

TEST(PlanModelTest, DataParallelReductionOverlapsBackwardButItsLastBucket) {
  // One micro-batch per rank (mb 4 on dp 4), buckets of 1/64 MiB: the reduction runs beside the
  // backward (2/3 of the compute); exposed is what the backward does not cover, and never less
  // than the last bucket.
  auto job = testing::JobFromText(kJob, "", {"parallel.grad_bucket_mb=0.015625"});
  ASSERT_TRUE(job.ok()) << job.status();
  for (double gbps : {1.0, 1e4}) {
    PlanMachine m = Machine(4, 4);
    m.intra_node_gbps = gbps;
    auto plan = PlanLayouts(*job, m);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const PlannedLayout* dp4 = Find(*plan, "dp4 tp1 pp1 v1 mb4 none");
    const PlannedLayout* zero = Find(*plan, "dp4 tp1 pp1 v1 mb4 none zero1");
    ASSERT_NE(dp4, nullptr);
    ASSERT_NE(zero, nullptr);
    const double bw = gbps * 1e9 / 8, params = static_cast<double>(dp4->memory.parameters);
    const double reduction = 2.0 * 3 / 4 * params * 4 / bw;
    const double last_bucket = 2.0 * 3 / 4 * 16384 / bw;
    const double window = 2.0 / 3 * dp4->time.compute;
    EXPECT_DOUBLE_EQ(dp4->time.dp_comm, std::max(last_bucket, reduction - window)) << gbps;
    EXPECT_DOUBLE_EQ(dp4->time.dp_hidden, reduction - dp4->time.dp_comm);
    if (gbps > 100) {
      EXPECT_DOUBLE_EQ(dp4->time.dp_comm, last_bucket) << "a fast link hides all but the last";
    } else {
      EXPECT_GT(dp4->time.dp_comm, last_bucket) << "a slow link leaves the rest exposed";
    }
    // ZeRO-1: a reduce-scatter (half the bytes) beside backward, then the weights' all-gather
    // after the optimizer step, exposed whole.
    const double gather = 3.0 / 4 * params * 4 / bw;  // fp32 weights on the CPU
    EXPECT_DOUBLE_EQ(zero->time.dp_comm,
                     std::max(last_bucket / 2, reduction / 2 - window) + gather);
  }
}

TEST(PlanModelTest, PipelineExchangesAndTheRingAreWhatIsNotHidden) {
  auto job = testing::JobFromText(kJob, "");
  ASSERT_TRUE(job.ok()) << job.status();
  PlanMachine m = Machine(4, 4);
  auto plan = PlanLayouts(*job, m);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // pp 2: every exchange (an activation forward, a gradient back, per micro-batch and chunk)
  // is waited for; with sequence parallelism each tp rank sends its B*T/tp rows.
  const PlannedLayout* pp2 = Find(*plan, "dp1 tp2 pp2 v1 mb2 none");
  ASSERT_NE(pp2, nullptr);
  const double p2p = 2.0 * 32 * 64 * 4 / 2 / (1000e9 / 8);
  EXPECT_DOUBLE_EQ(pp2->time.pp_comm, 2 * 8 * p2p);
  // cp 2: half the sequence per rank, so about half the activations (the ring's blocks
  // beside them); the same flops per GPU as dp.
  const PlannedLayout* cp1 = Find(*plan, "dp4 tp1 pp1 v1 mb1 none");
  const PlannedLayout* cp2 = Find(*plan, "dp2 tp1 cp2 pp1 v1 mb1 none");
  ASSERT_NE(cp1, nullptr);
  ASSERT_NE(cp2, nullptr);
  const double ratio = static_cast<double>(cp2->memory.activations) / cp1->memory.activations;
  EXPECT_GT(ratio, 0.4);
  EXPECT_LT(ratio, 0.8);
  EXPECT_DOUBLE_EQ(cp2->time.compute, cp1->time.compute) << "the same flops per GPU";
  // The ring (parallel/ring_attention.h): a block is B x T/cp = 16 tokens of whole qkv rows
  // (3 x 64 columns, Q included: 1.5 x K and V), fp32. Per layer forward 1 hop beside a block's
  // attention; backward the K/V hop (step 0) and the dK/dV accumulator (step 1) beside twice
  // that, then the accumulator's last hop home with nothing beside it. 4 layers, 8
  // micro-batches.
  const double block = 2.0 * 64 * 32 * 16 / 0.05e12 / 2;  // 2*C*T flops per token, 1/cp of it
  auto ring = [&](double gbps) {
    const double hop = 16.0 * 3 * 64 * 4 / (gbps * 1e9 / 8);
    auto exposed = [](double t, double c) { return std::max(0.0, t - c); };
    return 4 * 8 * (exposed(hop, block) + 2 * exposed(hop, 2 * block) + hop);
  };
  for (double gbps : {1e6, 0.01}) {
    m.intra_node_gbps = gbps;
    auto again = PlanLayouts(*job, m);
    ASSERT_TRUE(again.ok()) << again.status();
    const PlannedLayout* l = Find(*again, "dp2 tp1 cp2 pp1 v1 mb1 none");
    ASSERT_NE(l, nullptr);
    EXPECT_NEAR(l->time.cp_comm, ring(gbps), 1e-9 * ring(gbps)) << gbps;
  }
  // A fast link hides every hop but the last one home; a slow one exposes them all.
  EXPECT_DOUBLE_EQ(ring(1e6), 4 * 8 * 16.0 * 3 * 64 * 4 / (1e6 * 1e9 / 8));
  EXPECT_GT(ring(0.01), 0.99 * 4 * 8 * 4 * (16.0 * 3 * 64 * 4 / (0.01e9 / 8)));
}

// The ring takes the link its group spans: ranks are numbered tp fastest, then cp, so a cp
// group lies within tp x cp consecutive ranks; when those cross a node boundary the hops use
// the inter-node link.
TEST(PlanModelTest, TheRingCrossesNodesWhenItsGroupDoes) {
  auto job = testing::JobFromText(kJob, "", {"data.seq_len=24"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto ring = [&](int gpus, int per_node, double inter_gbps, const std::string& name) {
    PlanMachine m = Machine(gpus, per_node);
    m.inter_node_gbps = inter_gbps;
    auto plan = PlanLayouts(*job, m);
    EXPECT_TRUE(plan.ok()) << plan.status();
    const PlannedLayout* l = plan.ok() ? Find(*plan, name) : nullptr;
    EXPECT_NE(l, nullptr) << name;
    return l ? l->time.cp_comm : -1.0;
  };
  // 2 GPUs a node: cp 2 at tp 1 stays inside one; cp 2 at tp 2 and cp 4 do not.
  EXPECT_EQ(ring(4, 2, 10, "dp2 tp1 cp2 pp1 v1 mb1 none"),
            ring(4, 2, 1e6, "dp2 tp1 cp2 pp1 v1 mb1 none"));
  EXPECT_GT(ring(4, 2, 10, "dp1 tp2 cp2 pp1 v1 mb1 none"),
            ring(4, 2, 1e6, "dp1 tp2 cp2 pp1 v1 mb1 none"));
  EXPECT_GT(ring(4, 2, 10, "dp1 tp1 cp4 pp1 v1 mb1 none"),
            ring(4, 2, 1e6, "dp1 tp1 cp4 pp1 v1 mb1 none"));
  // 6 GPUs in nodes of 4: the second cp 3 group (ranks 3, 4, 5) crosses from one to the next.
  EXPECT_GT(ring(6, 4, 10, "dp2 tp1 cp3 pp1 v1 mb1 none"),
            ring(6, 4, 1e6, "dp2 tp1 cp3 pp1 v1 mb1 none"));
}

TEST(PlanModelTest, ZeroBubbleHasAThirdOfTheBubbleAndHoldsSlotsUntilW) {
  auto job = testing::JobFromText(kJob, "");
  ASSERT_TRUE(job.ok()) << job.status();
  auto plan = PlanLayouts(*job, Machine(4, 4));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlannedLayout* f1b = Find(*plan, "dp1 tp1 pp4 v1 mb1 none");
  const PlannedLayout* zb = Find(*plan, "dp1 tp1 pp4 v1 mb1 none zb");
  ASSERT_NE(f1b, nullptr);
  ASSERT_NE(zb, nullptr);
  // The bubble is the simulator's for the schedule the job runs (W actions and all): ZB-H1's
  // (p-1)(F+B-W) against 1F1B's (p-1)(F+B+W), a third with the simulator's B = W.
  const JobConfig zb_job = WithLayout(*job, *zb);
  EXPECT_EQ(zb_job.parallel().schedule(), ParallelConfig::ZERO_BUBBLE);
  auto layout = JobLayout::Create(zb_job, zb->world());
  ASSERT_TRUE(layout.ok()) << layout.status();
  auto bubble = SchedulePipelineBubble(PipelineScheduleKind::kZeroBubble, layout->pipeline_shape());
  ASSERT_TRUE(bubble.ok()) << bubble.status();
  EXPECT_DOUBLE_EQ(zb->time.bubble, (zb->time.compute + zb->time.tp_comm) * bubble->overhead);
  EXPECT_GT(f1b->time.bubble, 0);
  EXPECT_NEAR(zb->time.bubble, f1b->time.bubble / 3, 1e-9 * f1b->time.bubble);
  EXPECT_LT(zb->time.total(), f1b->time.total());
  // Memory is the trainer's estimate for the ZERO_BUBBLE job: 1F1B's first stage's micro-batches
  // in flight on every stage, each slot held until its W pass, which reads only what the slot
  // holds (no W buffers without recomputation): at least 1F1B's peak, more only where the
  // head's stage now holds p slots beside the head.
  auto e = EstimateMemoryPerRank(*layout);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(zb->memory.total, e->total);
  EXPECT_EQ(zb->memory.weight_grad_buffers, 0);
  EXPECT_EQ(zb->memory.micro_batches_in_flight, f1b->memory.micro_batches_in_flight);
  EXPECT_GE(zb->memory.activations, f1b->memory.activations);
}

TEST(PlanModelTest, MfuIsAgainstThePeakAndEfficiencyIsTheAssumption) {
  auto job = testing::JobFromText(kJob, "");
  ASSERT_TRUE(job.ok()) << job.status();
  // One GPU: no communication, no bubble; the step runs at peak x efficiency, so MFU is the
  // efficiency (less nothing).
  for (double e : {0.3, 0.5}) {
    PlanMachine m = Machine(1, 1);
    m.efficiency = e;
    auto plan = PlanLayouts(*job, m);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const PlannedLayout* one = Find(*plan, "dp1 tp1 pp1 v1 mb4 none");
    ASSERT_NE(one, nullptr);
    EXPECT_NEAR(one->mfu, e, 1e-12);
  }
  PlanMachine bad = Machine(1, 1);
  bad.efficiency = 1.5;
  auto refused = PlanLayouts(*job, bad);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--efficiency")) << refused.status();
}

TEST(PlanModelTest, PresetsAndCalibrationFiles) {
  auto h100 = FindGpuPreset("h100-sxm");
  ASSERT_TRUE(h100.ok());
  EXPECT_DOUBLE_EQ(h100->peak_tflops, 989.4);
  EXPECT_FALSE(h100->efficiency_source.empty());
  for (const GpuPreset& p : GpuPresets()) {
    EXPECT_GT(p.efficiency, 0.2) << p.name;
    EXPECT_LT(p.efficiency, 0.8) << p.name;
    EXPECT_FALSE(p.efficiency_source.empty()) << p.name;
  }
  EXPECT_TRUE(absl::StrContains(FindGpuPreset("v100").status().message(), "a100-80gb"));
  Calibration c{"H100 SXM", 989.4, 420.5, 0.425, "configs/llama_1b.textproto (bf16)"};
  auto back = ParseCalibration(FormatCalibration(c), "cal.txt");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->part, c.part);
  EXPECT_DOUBLE_EQ(back->efficiency, 0.425);
  EXPECT_EQ(back->job, c.job);
  auto missing = ParseCalibration("part x\npeak_tflops 1\n", "cal.txt");
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "cal.txt: not a loom calibration"));
  auto over = ParseCalibration("part x\npeak_tflops 1\nachieved_tflops 2\nefficiency 2\njob j\n",
                               "cal.txt");
  EXPECT_TRUE(absl::StrContains(over.status().message(), "exceeds 1")) << over.status();
}

absl::StatusOr<std::string> RunCommand(const std::string& command,
                                       const std::vector<std::string>& args) {
  auto it = CommandRegistry().find(command);
  if (it == CommandRegistry().end()) return absl::NotFoundError(command);
  ::testing::internal::CaptureStdout();
  absl::Status s = it->second.run(args);
  std::string out = ::testing::internal::GetCapturedStdout();
  if (!s.ok()) return s;
  return out;
}

TEST(PlanModelTest, BenchStepWritesTheCalibrationPlanReads) {
  const testing::ScopedTempDir tmp("plan_calibration");
  const std::string file = tmp.path() + "/job.textproto", cal = tmp.path() + "/cal.txt";
  ASSERT_TRUE(AtomicWriteFile(file, kJob).ok());
  auto bench = RunCommand(
      "bench step", {"--config", file, "--steps", "1", "--warmup", "0", "--calibration-out", cal});
  ASSERT_TRUE(bench.ok()) << bench.status();
  auto text = ReadFile(cal);
  ASSERT_TRUE(text.ok()) << text.status();
  auto c = ParseCalibration(*text, cal);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_GT(c->efficiency, 0);
  EXPECT_NEAR(c->achieved_tflops / c->peak_tflops, c->efficiency, 1e-3 * c->efficiency);
  // The plan takes the efficiency from it, on a machine with the peak it was measured against,
  // and says so; another peak is refused.
  auto plan = RunCommand("plan", {"--config", file, "--gpus", "2", "--calibration", cal,
                                  "--peak-tflops", absl::StrCat(c->peak_tflops)});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(absl::StrContains(*plan, "measured by loom bench step")) << *plan;
  auto refused = RunCommand("plan", {"--config", file, "--gpus", "2", "--calibration", cal});
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "give the matching --gpu"))
      << refused.status();
  // Presets set the figures, flags override them, and the printout names the peak.
  auto a100 = RunCommand(
      "plan", {"--config", file, "--gpus", "2", "--gpu", "a100-80gb", "--inter-node-gbps", "100"});
  ASSERT_TRUE(a100.ok()) << a100.status();
  EXPECT_TRUE(absl::StrContains(*a100, "a100-80gb (overridden: --inter-node-gbps)")) << *a100;
  EXPECT_TRUE(absl::StrContains(*a100, "peak 312 TFLOP/s")) << *a100;
  EXPECT_TRUE(absl::StrContains(*a100, "assumed achievable: 0.6 of peak")) << *a100;
  EXPECT_TRUE(absl::StrContains(*a100, "llm-foundry")) << *a100;
}

// The Llama 3 405B shape ("The Llama 3 Herd of Models", 2024, table 3 and section 3.3): 126
// layers, width 16,384, 128 heads over 8 KV heads, FFN 53,248, vocabulary 128,256, sequences of
// 8,192, 2,048 per step; trained on 16,384 H100 80 GB as TP 8, PP 16, DP 128 at 41% MFU. No
// data: the vocabulary exceeds what uint16 shards hold, and planning must not care.
constexpr char kLlama405b[] = R"(
model { family: LLAMA layers: 126 heads: 128 kv_heads: 8 hidden: 16384 ffn_hidden: 53248
        vocab: 128256 max_seq: 8192 }
parallel { micro_batch_size: 1 global_batch_size: 2048 }
optimizer { lr: 0.0001 }
lr_schedule { total_steps: 1000 }
data { seq_len: 8192 }
precision: BF16
runtime { backend: CUDA }
)";

TEST(PlanModelTest, Llama405bFitsOn16384H100sWithThePublishedLayoutAmongThem) {
  auto job = testing::JobFromText(kLlama405b, "");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_FALSE(ConfigProblems(*job, 16384).empty()) << "not trainable as is: no data, vocab";
  PlanSearch search;  // no cp, no ZERO_BUBBLE: the published layout, and a quick test
  search.max_cp = 1;
  search.zero_bubble = false;
  const PlanMachine m = MachineFromPreset(*FindGpuPreset("h100-sxm"), 16384);
  auto plan = PlanLayouts(*job, m, search);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlannedLayout& best = plan->front();
  EXPECT_TRUE(best.fits) << best.Name();
  EXPECT_LE(best.memory.total + best.reserve, 79.6 * 1073741824.0);
  // Published: 41% MFU (bf16, against the 989 TFLOP/s peak); the prediction must be within a
  // quarter of it (docs/planner.md).
  EXPECT_NEAR(best.mfu, 0.41, 0.25 * 0.41) << best.Name();
  // The published layout is enumerated with the published split (7, 8 x 14, 7) and fits.
  bool published_fits = false;
  for (const PlannedLayout& l : *plan) {
    if (l.degrees.tp == 8 && l.degrees.pp == 16 && l.degrees.dp == 128 &&
        l.degrees.virtual_stages == 1) {
      EXPECT_EQ(FormatStageLayers(l.chunk_layers), "7,8*14,7");
      EXPECT_TRUE(l.uneven);
      published_fits |= l.fits;
    }
  }
  EXPECT_TRUE(published_fits);
}

// TinyLlama's shape (configs/llama_1b.textproto): 1.1B parameters, 2,048-token sequences,
// 1,024 per step, on two 8-GPU H100 nodes. Counted as exposed, the 16-way gradient all-reduce
// over the inter-node link (~120 ms) made pp 2 (its dp 8 inside a node) look faster; beside the
// backward of a micro-batch of 8 or 16 sequences it is hidden but the last bucket.
constexpr char kLlama1b[] = R"(
model { family: LLAMA layers: 22 heads: 32 kv_heads: 4 hidden: 2048 ffn_hidden: 5632 vocab: 32000
        max_seq: 2048 tied_embeddings: false }
parallel { micro_batch_size: 8 global_batch_size: 1024 }
optimizer { lr: 0.0004 }
lr_schedule { total_steps: 1000 }
data { seq_len: 2048 }
precision: BF16
runtime { backend: CUDA }
)";

TEST(PlanModelTest, OneBillionOnSixteenGpusPrefersDataParallelismToPipelining) {
  auto job = testing::JobFromText(kLlama1b, "");
  ASSERT_TRUE(job.ok()) << job.status();
  auto plan = PlanLayouts(*job, MachineFromPreset(*FindGpuPreset("h100-sxm"), 16));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlannedLayout* best_dp = nullptr;
  const PlannedLayout* best_pp2 = nullptr;
  for (const PlannedLayout& l : *plan) {
    if (!l.fits) continue;
    const bool pure_dp = l.degrees.dp == 16;
    if (pure_dp && best_dp == nullptr) best_dp = &l;
    if (l.degrees.pp == 2 && best_pp2 == nullptr) best_pp2 = &l;
  }
  ASSERT_NE(best_dp, nullptr);
  ASSERT_NE(best_pp2, nullptr);
  EXPECT_LT(best_dp->time.total(), best_pp2->time.total())
      << best_dp->Name() << " vs " << best_pp2->Name();
  EXPECT_EQ(plan->front().degrees.dp, 16) << plan->front().Name();
  EXPECT_GT(best_dp->time.dp_hidden, 0.05) << "most of the reduction is hidden";
}

// Every layout the planner proposes, cp and ZERO_BUBBLE among them, is one the config check
// takes on its world of dp x tp x cp x pp ranks (and refuses on dp x tp x pp: cp multiplies
// the world); a cp the sequence does not allow is never proposed; the memory is the trainer's
// estimate of exactly that job.
TEST(PlanModelTest, EveryLayoutPassesTheConfigCheckOnItsWorldWithCp) {
  // 20 tokens: cp 2 cuts them into 4 chunks of 5; cp 4 would need 8 chunks, which 20 does not
  // divide into.
  auto job = testing::JobFromText(kJob, "", {"data.seq_len=20"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto plan = PlanLayouts(*job, Machine(4, 4));
  ASSERT_TRUE(plan.ok()) << plan.status();
  int cp2 = 0, zb = 0;
  for (const PlannedLayout& l : *plan) {
    EXPECT_EQ(l.degrees.dp * l.degrees.tp * l.cp * l.degrees.pp, 4) << l.Name();
    EXPECT_EQ(l.world(), 4) << l.Name();
    EXPECT_NE(l.cp, 4) << l.Name() << ": 20 tokens are not 8 chunks";
    const JobConfig with = WithLayout(*job, l);
    EXPECT_EQ(with.parallel().cp(), l.cp) << l.Name();
    EXPECT_EQ(with.parallel().schedule() == ParallelConfig::ZERO_BUBBLE,
              l.schedule == PlanSchedule::kZeroBubble)
        << l.Name();
    const std::vector<std::string> problems = LayoutProblems(with, l.world());
    EXPECT_TRUE(problems.empty()) << l.Name() << ": " << problems.front();
    if (l.cp > 1) {
      EXPECT_FALSE(LayoutProblems(with, l.degrees.dp * l.degrees.tp * l.degrees.pp).empty())
          << l.Name() << " runs on " << l.world() << " ranks, not dp*tp*pp";
    }
    cp2 += l.cp == 2;
    zb += l.schedule == PlanSchedule::kZeroBubble;
  }
  EXPECT_GT(cp2, 0);
  EXPECT_GT(zb, 0);
  // The memory is EstimateMemoryPerRank of the layout's own job (ring blocks, slots held until
  // W and all), for a cp 2 x pp 2 ZERO_BUBBLE layout as for any.
  const PlannedLayout* both = Find(*plan, "dp1 tp1 cp2 pp2 v1 mb1 none zb");
  ASSERT_NE(both, nullptr);
  auto layout = JobLayout::Create(WithLayout(*job, *both), both->world());
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->seq_len_per_cp_rank, 10);
  auto e = EstimateMemoryPerRank(*layout);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(both->memory.total, e->total);
  EXPECT_EQ(both->memory.weight_grad_buffers, 0);  // W reads what the slots hold
}

// The Llama 3 8B shape (32 layers, width 4,096, 32 heads over 8 KV heads, FFN 14,336,
// vocabulary 128,256) at 32,768 tokens per sequence, 16 per step, on two 8-GPU H100 nodes. At
// cp 1 and tp 1 a micro-batch's activations alone exceed the GPU without recomputation; cp
// splits them. The best layout splits the sequence 8 ways over a node, pipelines 2 stages over
// the nodes and fills the pipeline's bubble with ZERO_BUBBLE's W passes; `loom plan --job-out`
// writes it as a job carrying cp and the schedule.
constexpr char kLlama8b32k[] = R"(
model { family: LLAMA layers: 32 heads: 32 kv_heads: 8 hidden: 4096 ffn_hidden: 14336
        vocab: 128256 max_seq: 32768 }
parallel { micro_batch_size: 1 global_batch_size: 16 }
optimizer { lr: 0.0003 }
lr_schedule { total_steps: 1000 }
data { seq_len: 32768 }
precision: BF16
runtime { backend: CUDA }
)";

TEST(PlanModelTest, LongSequencesPlanContextParallelismAndZeroBubble) {
  auto job = testing::JobFromText(kLlama8b32k, "");
  ASSERT_TRUE(job.ok()) << job.status();
  const PlanMachine m = MachineFromPreset(*FindGpuPreset("h100-sxm"), 16);
  PlanSearch search;
  search.max_micro_batch = 2;  // one sequence per micro-batch is what fits; keeps the test quick
  auto plan = PlanLayouts(*job, m, search);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const double gpu = 79.6 * 1073741824.0;
  for (const PlannedLayout& l : *plan) {
    if (l.cp == 1 && l.degrees.tp == 1 && l.degrees.recompute == Recompute::kNone) {
      EXPECT_FALSE(l.fits) << l.Name();
    }
  }
  const PlannedLayout* plain = Find(*plan, "dp16 tp1 pp1 v1 mb1 none");
  ASSERT_NE(plain, nullptr);
  EXPECT_GT(static_cast<double>(plain->memory.activations), gpu) << "activations alone";
  const PlannedLayout& best = plan->front();
  EXPECT_TRUE(best.fits) << best.Name();
  EXPECT_LE(best.memory.total + best.reserve, gpu);
  EXPECT_GT(best.cp, 1) << best.Name();
  EXPECT_EQ(best.schedule, PlanSchedule::kZeroBubble) << best.Name();
  EXPECT_EQ(best.degrees.recompute, Recompute::kNone) << best.Name();
  EXPECT_LT(static_cast<double>(best.memory.activations), plain->memory.activations / 4.0)
      << "cp " << best.cp << " holds 1/" << best.cp << " of each sequence";
  for (const PlannedLayout& l : *plan) {
    if (l.cp == 1 && l.fits) {
      EXPECT_GT(l.time.total(), best.time.total()) << l.Name();
      break;  // the fastest cp 1 layout that fits
    }
  }
  // Its 1F1B twin fits in the same GPU too, and ranks below it: the simulator's bubble of ZB-H1
  // is a third of 1F1B's.
  std::string twin_name = best.Name();
  twin_name.resize(twin_name.size() - 3);  // less " zb"
  const PlannedLayout* twin = Find(*plan, twin_name);
  ASSERT_NE(twin, nullptr) << twin_name;
  EXPECT_TRUE(twin->fits);
  EXPECT_EQ(twin->schedule, PlanSchedule::kOneFOneB);
  EXPECT_LT(best.time.total(), twin->time.total());
  EXPECT_NEAR(best.time.bubble, twin->time.bubble / 3, 1e-9 * twin->time.bubble);
  EXPECT_GE(best.memory.total, twin->memory.total) << "W passes hold their buffers";

  // The command: the table shows cp and the schedule; --job-out writes the top layout's job,
  // which parses back with cp, the schedule and the rest of the layout, valid on its world.
  const testing::ScopedTempDir tmp("plan_long");
  const std::string file = tmp.path() + "/job.textproto", out = tmp.path() + "/planned.textproto";
  ASSERT_TRUE(AtomicWriteFile(file, kLlama8b32k).ok());
  auto printed = RunCommand("plan", {"--config", file, "--gpus", "16", "--max-micro-batch", "2",
                                     "--top", "1", "--job-out", out});
  ASSERT_TRUE(printed.ok()) << printed.status();
  const std::vector<std::string> lines = absl::StrSplit(*printed, '\n');
  size_t header = 0;
  while (header < lines.size() && !absl::StartsWith(lines[header], "rank")) ++header;
  ASSERT_LT(header + 1, lines.size()) << *printed;
  const std::vector<std::string> head = absl::StrSplit(lines[header], ' ', absl::SkipEmpty());
  const std::vector<std::string> row = absl::StrSplit(lines[header + 1], ' ', absl::SkipEmpty());
  ASSERT_GT(row.size(), 8u) << lines[header + 1];
  EXPECT_EQ(head[3], "cp");
  EXPECT_EQ(head[7], "sched");
  EXPECT_EQ(row[3], absl::StrCat(best.cp)) << lines[header + 1];
  EXPECT_EQ(row[7], "zb") << lines[header + 1];
  auto planned = LoadJobConfig(out, {});
  ASSERT_TRUE(planned.ok()) << planned.status();
  const ParallelConfig& p = planned->parallel();
  EXPECT_EQ(p.cp(), best.cp);
  EXPECT_EQ(p.schedule(), ParallelConfig::ZERO_BUBBLE);
  EXPECT_EQ(p.dp(), best.degrees.dp);
  EXPECT_EQ(p.tp(), best.degrees.tp);
  EXPECT_EQ(p.pp(), best.degrees.pp);
  EXPECT_EQ(p.micro_batch_size(), best.micro_batch);
  EXPECT_EQ(p.distributed_optimizer(), best.distributed_optimizer);
  EXPECT_TRUE(LayoutProblems(*planned, best.world()).empty())
      << LayoutProblems(*planned, best.world()).front();
  auto text = ReadFile(out);
  ASSERT_TRUE(text.ok());
  EXPECT_TRUE(absl::StrContains(*text, absl::StrCat("# run on ", best.world(), " ranks"))) << *text;
}

}  // namespace
}  // namespace loom
