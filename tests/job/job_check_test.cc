// The job check end to end, in one process: `loom config check` and `loom train` give the same
// verdict (exit code 2, the same list) for a table of bad jobs; the memory estimate matches what
// the allocator really holds after a training step and refuses a job that cannot fit an injected
// limit before allocating; the trainer stops at a step boundary when asked; a disk that fills
// mid-run costs the metrics, not the run; non-finite init weights are refused naming the
// tensor; the GEMM peak comes from its cache.
#include "job/job_check.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "ops/roofline.h"
#include "data/token_shard.h"
#include "launcher/command.h"
#include "job/config.h"
#include "job/memory_estimate.h"
#include "train/stop_signal.h"
#include "train/trainer.h"
#include "metrics/append_file.h"
#include "model/model_file.h"
#include "model/gpt_params.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "runtime/memory_info.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"

namespace loom {
namespace {

// The estimate for `job` laid out as `degrees`, failing the test (not crashing) on an error.
MemoryEstimate Estimate(const JobConfig& job, const LayoutDegrees& degrees) {
  auto estimate = EstimateMemoryPerRank(job, degrees);
  EXPECT_TRUE(estimate.ok()) << estimate.status();
  return estimate.ok() ? *estimate : MemoryEstimate{};
}

World* TestWorld() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return *w;
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    if (old != nullptr) old_ = old;
    had_ = old != nullptr;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { had_ ? setenv(name_, old_.c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// A tiny job whose activations weigh about as much as its parameters, so the memory test sees
// every term.
constexpr char kJob[] = R"(
model { family: GPT2 layers: 2 heads: 2 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 8 global_batch_size: 16 }
optimizer { lr: 0.01 }
lr_schedule { warmup_steps: 2 total_steps: 12 }
data { train: "$DIR/data/train_*.bin" val: "$DIR/data/val_*.bin" seq_len: 32 }
logging { run_dir: "$DIR/run" eval_interval: 6 eval_batches: 2 }
runtime { backend: CPU seed: 1 }
)";

class JobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    ASSERT_TRUE(MakeDirs(dir_ + "/data").ok());
    std::vector<uint16_t> ids;
    for (int i = 0; i < 4000; ++i) ids.push_back(static_cast<uint16_t>((i * 7 + i / 13) % 257));
    ASSERT_TRUE(WriteShard(dir_ + "/data/train_000.bin", ids, ShardFormat::kLlmc).ok());
    ASSERT_TRUE(WriteShard(dir_ + "/data/val_000.bin", ids, ShardFormat::kLlmc).ok());
    job_file_ = dir_ + "/job.textproto";
    ASSERT_TRUE(AtomicWriteFile(job_file_, absl::StrReplaceAll(kJob, {{"$DIR", dir_}})).ok());
    ResetStopSignalForTesting();
  }
  void TearDown() override {
    ResetStopSignalForTesting();
    SetAppendWriteFunctionForTesting(nullptr);
  }

  absl::StatusOr<JobConfig> Job(const std::vector<std::string>& overrides = {}) {
    return testing::JobFromText(kJob, dir_, overrides);
  }

  static absl::Status Run(const std::string& command, const std::vector<std::string>& args) {
    auto it = CommandRegistry().find(command);
    if (it == CommandRegistry().end()) return absl::NotFoundError(command + " not registered");
    ::testing::internal::CaptureStdout();
    absl::Status s = it->second.run(args);
    ::testing::internal::GetCapturedStdout();
    return s;
  }

  testing::ScopedTempDir tmp_{"job_check"};
  std::string dir_;
  std::string job_file_;
};

// Fine-tuning data (shards with token flags: loss masks, packed documents) on a context-parallel
// layout, sampling text as it trains: `config check` accepts the job (training it is compared
// with one rank under mpirun: tests/parallel/context_parallel_train_test.cc).
TEST_F(JobTest, ConfigCheckAcceptsFineTuningDataAndSamplingWithContextParallelism) {
  testing::WriteSftShard(dir_ + "/data/sft_train_000.bin", 200, /*short_lines=*/true);
  testing::WriteSftShard(dir_ + "/data/sft_val_000.bin", 60, /*short_lines=*/true);
  const absl::Status s =
      Run("config check", {"--config", job_file_, "--world-size", "2", "--set", "parallel.cp=2",
                           "--set", "data.train=" + dir_ + "/data/sft_train_*.bin", "--set",
                           "data.val=" + dir_ + "/data/sft_val_*.bin", "--set",
                           "logging.sample_interval=5", "--set", "logging.sample_length=16"});
  EXPECT_TRUE(s.ok()) << s;
}

// ---- one verdict -------------------------------------------------------------------------

struct BadJob {
  std::string name;
  std::vector<std::string> sets;  // "$DIR" is replaced
  std::string expected;           // a piece of the problem list
  std::string env_name, env_value;
};

class SameVerdictTest : public JobTest, public ::testing::WithParamInterface<BadJob> {};

TEST_P(SameVerdictTest, ConfigCheckAndTrainRefuseAlike) {
  const BadJob& bad = GetParam();
  if (bad.name == "Bf16WithoutCuda" && CudaDeviceCount() > 0) GTEST_SKIP() << "a GPU is here";
  if (bad.name == "RunDirHoldsMetrics") {
    ASSERT_TRUE(MakeDirs(dir_ + "/run").ok());
    ASSERT_TRUE(AtomicWriteFile(dir_ + "/run/metrics.jsonl", "{\"step\":1,\"loss\":5}\n").ok());
  }
  if (bad.name == "InitFromCheckpointDir") ASSERT_TRUE(MakeDirs(dir_ + "/step_00000010").ok());
  std::optional<ScopedEnv> env;
  if (!bad.env_name.empty()) env.emplace(bad.env_name.c_str(), bad.env_value);
  std::vector<std::string> args = {"--config", job_file_};
  for (const std::string& s : bad.sets) {
    args.push_back("--set");
    args.push_back(absl::StrReplaceAll(s, {{"$DIR", dir_}}));
  }
  std::vector<std::string> check_args = args;
  check_args.insert(check_args.end(), {"--world-size", "1"});
  absl::Status check = Run("config check", check_args);
  absl::Status train = Run("train", args);
  EXPECT_EQ(check.code(), absl::StatusCode::kInvalidArgument) << check;
  EXPECT_EQ(train.code(), absl::StatusCode::kInvalidArgument) << train;
  EXPECT_TRUE(absl::StrContains(train.message(), bad.expected)) << train;
  EXPECT_EQ(std::string(check.message()), absl::StrCat(job_file_, ": ", train.message()));
  // Nothing was trained: no metrics were written.
  if (bad.name != "RunDirHoldsMetrics") {
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/run/metrics.jsonl")) << "train started";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, SameVerdictTest,
    ::testing::Values(
        BadJob{"TensorParallelNeedsTheRanks", {"parallel.tp=2"}, "parallel.tp"},
        BadJob{"PipelineNeedsTheRanks", {"parallel.pp=2"}, "parallel.pp"},
        BadJob{"ResumePathNeverIgnored",
               {"checkpoint.resume=$DIR/ckpt/step_00000005"},
               "checkpoint.resume: checkpoint path"},
        BadJob{"InitFromDirWithoutCheckpoint", {"model.init_from=$DIR/data"}, "model.init_from: '"},
        BadJob{"CollectiveTimeoutBelowOneSecond",
               {"runtime.collective_timeout_s=0"},
               "runtime.collective_timeout_s"},
        BadJob{"Bf16WithoutCuda", {"precision=BF16", "runtime.backend=AUTO"}, "precision BF16"},
        BadJob{"Bf16OnCpu", {"precision=BF16"}, "runtime.backend is CPU"},
        BadJob{"TrainGlobMatchesNothing", {"data.train=$DIR/nowhere/*.bin"}, "data.train: "},
        BadJob{"ValGlobMatchesNothing", {"data.val=$DIR/data/valid_*.bin"}, "data.val: "},
        BadJob{"RunDirHoldsMetrics", {}, "already holds an earlier run's metrics"},
        BadJob{"OverflowingLayers", {"model.layers=2147483647"}, "model.layers (2147483647)"},
        BadJob{"DoesNotFitMemory", {}, "memory: the job needs", kMemoryLimitEnv, "1M"}),
    [](const ::testing::TestParamInfo<BadJob>& info) { return info.param.name; });

TEST_F(JobTest, OverwriteLetsAFreshRunReplaceTheOldMetrics) {
  ASSERT_TRUE(MakeDirs(dir_ + "/run").ok());
  ASSERT_TRUE(AtomicWriteFile(dir_ + "/run/metrics.jsonl", "{\"step\":1,\"loss\":5}\n").ok());
  auto refused = Job();
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(JobCheckStatus(CheckJob(*refused, 1), 1).ok());
  auto job = Job({"lr_schedule.total_steps=2", "logging.overwrite=true"});
  ASSERT_TRUE(job.ok());
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  auto text = ReadFile(dir_ + "/run/metrics.jsonl");
  ASSERT_TRUE(text.ok());
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << *text;
  EXPECT_TRUE(absl::StartsWith(lines[0], "{\"step\":1,\"loss\":5.")) << lines[0];
}

// ---- memory ------------------------------------------------------------------------------

TEST_F(JobTest, EstimateMatchesTheAllocatorPeakOfATrainingStep) {
  for (const char* family : {"GPT2", "LLAMA"}) {
    SCOPED_TRACE(family);
    auto job = Job({absl::StrCat("model.family=", family), "logging.run_dir="});
    ASSERT_TRUE(job.ok()) << job.status();
    const MemoryEstimate est = Estimate(*job, LayoutDegrees{});
    CachingAllocator& alloc = CpuDevice()->allocator();
    alloc.EmptyCache();
    alloc.ResetPeak();
    const int64_t before = static_cast<int64_t>(alloc.stats().live_bytes);
    {
      auto t = Trainer::Create(*job, TestWorld());
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(est.parameters, (*t)->model().layout().total());
      ASSERT_TRUE((*t)->Step().ok());
      ASSERT_TRUE((*t)->Evaluate().ok());
    }
    const int64_t peak = static_cast<int64_t>(alloc.stats().peak_bytes) - before;
    EXPECT_EQ(est.weights, 4 * est.parameters);
    EXPECT_EQ(est.gradients, 4 * est.parameters);
    EXPECT_EQ(est.optimizer_moments, 8 * est.parameters);
    EXPECT_EQ(est.master_weights, 0);
    EXPECT_GT(est.activations, est.weights / 2) << "the job should weigh activations too";
    std::printf("%s: estimate %lld bytes, allocator peak %lld bytes\n", family,
                static_cast<long long>(est.total), static_cast<long long>(peak));
    EXPECT_NEAR(static_cast<double>(est.total), static_cast<double>(peak), 0.15 * peak)
        << "estimate " << est.total << " bytes, allocator peak " << peak << " bytes\n"
        << FormatMemoryEstimate(est, "  ");
  }
}

// `loom config check` and `loom train` estimate the job's memory from its layout, recomputation
// included (the job check once built its layout without parallel.recompute, so both priced a
// recomputing job as if it kept every activation; only `loom plan` passed it).
TEST_F(JobTest, CheckPricesTheJobsRecomputation) {
  const std::vector<std::string> base = {"model.layers=4", "model.heads=4", "model.hidden=64",
                                         "logging.run_dir="};
  std::map<std::string, int64_t> activations;
  for (const char* mode : {"NONE", "SELECTIVE", "FULL"}) {
    std::vector<std::string> sets = base;
    sets.push_back(absl::StrCat("parallel.recompute=", mode));
    auto job = Job(sets);
    ASSERT_TRUE(job.ok()) << job.status();
    const JobCheck check = CheckJob(*job, 1);
    ASSERT_TRUE(check.memory.has_value()) << absl::StrJoin(check.problems, "\n");
    ASSERT_TRUE(check.numbers.has_value());
    activations[mode] = check.memory->activations;
    // The same figure as the estimate for the layout with that recomputation.
    LayoutDegrees degrees;
    degrees.recompute = check.numbers->recompute;
    EXPECT_EQ(check.memory->activations, Estimate(*job, degrees).activations);
  }
  EXPECT_LT(activations["SELECTIVE"], activations["NONE"]);
  EXPECT_LT(activations["FULL"], activations["SELECTIVE"]);
}

// ZERO_BUBBLE keeps what the deferred weight gradients read until their W pass. Without
// recomputation that is all in the plain slot (a ZERO_BUBBLE slot is a 1F1B slot); with
// selective recomputation the rebuilt MLP activation is kept aside, and the estimate counts it
// (from the model's own plan, as the allocation does). Both match the allocator's peak of a
// training step (one stage: F B W per micro-batch).
TEST_F(JobTest, EstimateCountsZeroBubblesWeightGradientBuffers) {
  const std::vector<std::string> base = {"model.layers=4", "model.heads=4", "model.hidden=64",
                                         "logging.run_dir="};
  std::map<std::string, MemoryEstimate> est;
  for (const char* recompute : {"NONE", "SELECTIVE"}) {
    for (const char* schedule : {"ONE_F_ONE_B", "ZERO_BUBBLE"}) {
      const std::string key = absl::StrCat(schedule, " ", recompute);
      std::vector<std::string> sets = base;
      sets.push_back(absl::StrCat("parallel.schedule=", schedule));
      sets.push_back(absl::StrCat("parallel.recompute=", recompute));
      auto job = Job(sets);
      ASSERT_TRUE(job.ok()) << job.status();
      const JobCheck check = CheckJob(*job, 1);
      ASSERT_TRUE(check.memory.has_value()) << absl::StrJoin(check.problems, "\n");
      est[key] = *check.memory;
      CachingAllocator& alloc = CpuDevice()->allocator();
      alloc.EmptyCache();
      alloc.ResetPeak();
      const int64_t before = static_cast<int64_t>(alloc.stats().live_bytes);
      {
        auto t = Trainer::Create(*job, TestWorld());
        ASSERT_TRUE(t.ok()) << t.status();
        ASSERT_TRUE((*t)->Step().ok());
        EXPECT_EQ((*t)->model().activation_bytes(), check.memory->activations) << key;
      }
      const int64_t peak = static_cast<int64_t>(alloc.stats().peak_bytes) - before;
      EXPECT_NEAR(static_cast<double>(check.memory->total), static_cast<double>(peak), 0.15 * peak)
          << key << ": estimate " << check.memory->total << " bytes, allocator peak " << peak
          << "\n"
          << FormatMemoryEstimate(*check.memory, "  ");
    }
  }
  EXPECT_EQ(est["ONE_F_ONE_B NONE"].weight_grad_buffers, 0);
  EXPECT_EQ(est["ZERO_BUBBLE NONE"].weight_grad_buffers, 0);
  EXPECT_EQ(est["ZERO_BUBBLE NONE"].activations, est["ONE_F_ONE_B NONE"].activations);
  EXPECT_GT(est["ZERO_BUBBLE SELECTIVE"].weight_grad_buffers, 0);
  EXPECT_EQ(est["ZERO_BUBBLE SELECTIVE"].activations - est["ONE_F_ONE_B SELECTIVE"].activations,
            est["ZERO_BUBBLE SELECTIVE"].weight_grad_buffers);
  EXPECT_NE(FormatMemoryEstimate(est["ZERO_BUBBLE SELECTIVE"], "").find("of which W buffers"),
            std::string::npos);
}

TEST_F(JobTest, EstimateShardsAsMegatronDoes) {
  auto job = Job({"model.layers=4", "model.heads=4", "model.hidden=64"});
  ASSERT_TRUE(job.ok());
  const MemoryEstimate one = Estimate(*job, LayoutDegrees{});
  // tp 2: the weight matrices halve, the norms and the position table do not.
  const MemoryEstimate tp2 = Estimate(*job, LayoutDegrees{1, 2, 1, 1});
  EXPECT_LT(tp2.parameters, one.parameters * 0.6);
  EXPECT_GT(tp2.parameters, one.parameters * 0.5);
  EXPECT_LT(tp2.activations, one.activations);
  // Sequence parallelism splits the rest of the activations too.
  auto sp_job = Job(
      {"model.layers=4", "model.heads=4", "model.hidden=64", "parallel.sequence_parallel=true"});
  ASSERT_TRUE(sp_job.ok());
  const MemoryEstimate sp = Estimate(*sp_job, LayoutDegrees{1, 2, 1, 1});
  EXPECT_EQ(sp.parameters, tp2.parameters);
  // Everything the model keeps per layer is then split; what stays whole is the model's own
  // full-sequence buffers (the gathered input of a column-parallel GEMM, its output before the
  // reduce-scatter, and their gradients), held once.
  EXPECT_LT(sp.activations, tp2.activations);
  EXPECT_LT(sp.activations, 0.6 * one.activations);
  // pp 2: a stage holds half the layers (and the embedding or the head), but the first stage
  // keeps 2 micro-batches in flight.
  const MemoryEstimate pp2 = Estimate(*job, LayoutDegrees{1, 1, 2, 1});
  EXPECT_LT(pp2.parameters, one.parameters);
  EXPECT_EQ(pp2.micro_batches_in_flight, 2);
  // The distributed optimizer splits the moments over dp.
  auto zero = Job({"model.layers=4", "model.heads=4", "model.hidden=64",
                   "parallel.distributed_optimizer=true", "parallel.micro_batch_size=1"});
  ASSERT_TRUE(zero.ok());
  const MemoryEstimate dp4 = Estimate(*zero, LayoutDegrees{4, 1, 1, 1});
  EXPECT_EQ(dp4.parameters, one.parameters);
  EXPECT_NEAR(dp4.optimizer_moments, one.optimizer_moments / 4.0, 1);
  // BF16: 2 bytes of weights, 4 of fp32 gradients, 4 of master weights, 8 of moments.
  auto bf16 = Job({"model.layers=4", "model.heads=4", "model.hidden=64", "precision=BF16",
                   "runtime.backend=AUTO"});
  ASSERT_TRUE(bf16.ok());
  const MemoryEstimate half = Estimate(*bf16, LayoutDegrees{});
  EXPECT_EQ(half.weights, 2 * half.parameters);
  EXPECT_EQ(half.gradients, 4 * half.parameters);
  EXPECT_EQ(half.master_weights, 4 * half.parameters);
  EXPECT_EQ(half.optimizer_moments, 8 * half.parameters);
}

// Context parallelism: a rank holds seq_len / cp tokens of each sequence, so its activations
// fall about 1/cp (plus ring attention's blocks in flight); parameters are replicated over cp,
// and ZeRO-1 shards the moments over dp x cp.
TEST_F(JobTest, EstimateSplitsActivationsOverCp) {
  const std::vector<std::string> base = {"model.layers=4", "model.heads=4", "model.hidden=64",
                                         "parallel.micro_batch_size=1"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), base.begin(), base.end());
    auto job = Job(more);
    EXPECT_TRUE(job.ok()) << job.status();
    return Estimate(*job, LayoutDegrees{});
  };
  const MemoryEstimate one = with({});
  const MemoryEstimate cp2 = with({"parallel.cp=2"});
  const MemoryEstimate cp4 = with({"parallel.cp=4"});
  EXPECT_EQ(cp2.parameters, one.parameters);
  EXPECT_EQ(cp2.optimizer_moments, one.optimizer_moments);
  EXPECT_LT(cp2.activations, 0.65 * one.activations) << FormatMemoryEstimate(cp2, "  ");
  EXPECT_GT(cp2.activations, 0.45 * one.activations) << FormatMemoryEstimate(cp2, "  ");
  EXPECT_LT(cp4.activations, 0.4 * one.activations) << FormatMemoryEstimate(cp4, "  ");
  const MemoryEstimate zero = with({"parallel.cp=2", "parallel.distributed_optimizer=true"});
  EXPECT_NEAR(zero.optimizer_moments, one.optimizer_moments / 2.0, 1);
}

TEST_F(JobTest, AJobTooBigForTheMemoryIsRefusedBeforeAllocating) {
  // About 47M parameters (16 bytes each) in 400 MiB.
  auto job = Job({"model.layers=1", "model.hidden=768", "model.heads=12", "model.vocab=50257",
                  "model.max_seq=1024", "data.seq_len=32", "logging.run_dir="});
  ASSERT_TRUE(job.ok()) << job.status();
  ScopedEnv limit(kMemoryLimitEnv, "400M");
  CachingAllocator& alloc = CpuDevice()->allocator();
  alloc.ResetPeak();
  const size_t before = alloc.stats().peak_bytes;
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(t.status().message());
  EXPECT_TRUE(absl::StrContains(msg, "memory: the job needs 7")) << msg;  // ~750 MiB
  EXPECT_TRUE(absl::StrContains(msg, "400.0 MiB available (LOOM_MEMORY_LIMIT_BYTES)")) << msg;
  EXPECT_EQ(alloc.stats().peak_bytes, before) << "something was allocated before refusing";
}

TEST(MemoryInfoTest, LimitFromTheEnvironmentAndCgroupNumbers) {
  {
    ScopedEnv limit(kMemoryLimitEnv, "3G");
    auto v = MemoryLimitFromEnv();
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, int64_t{3} << 30);
    auto host = HostAvailableMemory();
    ASSERT_TRUE(host.ok()) << host.status();
    EXPECT_LE(host->bytes, int64_t{3} << 30);
  }
  {
    ScopedEnv limit(kMemoryLimitEnv, "lots");
    EXPECT_FALSE(MemoryLimitFromEnv().ok());
    auto host = HostAvailableMemory();
    ASSERT_FALSE(host.ok());
    EXPECT_TRUE(absl::StrContains(host.status().message(), kMemoryLimitEnv));
  }
  auto host = HostAvailableMemory();
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_GT(host->bytes, 0);
  EXPECT_EQ(*ParseCgroupBytes("max\n"), -1);
  EXPECT_EQ(*ParseCgroupBytes("1048576\n"), 1048576);
  EXPECT_FALSE(ParseCgroupBytes("12x").ok());
}

// ---- stopping, full disks, bad weights --------------------------------------------------

TEST_F(JobTest, StopRequestEndsRunAtTheNextStepBoundary) {
  auto job = Job();
  ASSERT_TRUE(job.ok());
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(t.ok()) << t.status();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*t)->Step().ok());
  RaiseStopForTesting(SIGTERM);
  EXPECT_TRUE((*t)->Run().ok());
  EXPECT_EQ((*t)->step(), 3) << "the run went on after the stop request";
}

// runtime.max_duration_s: the run stops at a step boundary early enough that the next step and
// the margin still fit, returns OK (a clean stop), and every step it logged is whole.
TEST_F(JobTest, TimeLimitStopsTheRunBeforeTheLimit) {
  const absl::Time start = absl::Now();
  auto job = Job({"lr_schedule.total_steps=1000000", "runtime.max_duration_s=4",
                  "runtime.stop_margin_s=1", "logging.tensorboard=false"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  const double took = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_GT((*t)->step(), 0);
  EXPECT_LT((*t)->step(), 1000000);
  EXPECT_LT(took, 4.0) << "the run went past runtime.max_duration_s";
  EXPECT_GT(took, 2.0) << "the run stopped long before the limit less its margin";
}

TEST_F(JobTest, TimeLimitMarginMustFitTheLimit) {
  auto job = Job({"runtime.max_duration_s=30", "runtime.stop_margin_s=30"});
  ASSERT_TRUE(job.ok()) << job.status();
  const std::vector<std::string> problems = ConfigProblems(*job, 1);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_TRUE(absl::StrContains(problems[0],
                                "runtime.stop_margin_s (30) must be less than "
                                "runtime.max_duration_s (30)"))
      << problems[0];
  auto dflt = Job({"runtime.max_duration_s=300"});
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(dflt->runtime().stop_margin_s(), 30) << "the default margin is a tenth of the limit";
}

int64_t g_disk_left = 0;
ssize_t SmallDiskWrite(int fd, const void* data, size_t bytes) {
  if (g_disk_left <= 0) {
    errno = ENOSPC;
    return -1;
  }
  const size_t n = std::min<size_t>(bytes, static_cast<size_t>(g_disk_left));
  const ssize_t w = ::write(fd, data, n);
  if (w > 0) g_disk_left -= w;
  return w;
}

TEST_F(JobTest, AFullDiskCostsTheMetricsNotTheRun) {
  auto job = Job({"logging.tensorboard=false"});
  ASSERT_TRUE(job.ok());
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(t.ok()) << t.status();
  g_disk_left = 700;  // a few lines' worth
  SetAppendWriteFunctionForTesting(SmallDiskWrite);
  EXPECT_TRUE((*t)->Run().ok());
  SetAppendWriteFunctionForTesting(nullptr);
  EXPECT_EQ((*t)->step(), 12);
  auto text = ReadFile(dir_ + "/run/metrics.jsonl");
  ASSERT_TRUE(text.ok());
  ASSERT_FALSE(text->empty());
  EXPECT_EQ(text->back(), '\n') << "half a line was left:\n" << *text;
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  EXPECT_GE(lines.size(), 2u);
  EXPECT_LT(lines.size(), 12u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_TRUE(absl::StartsWith(lines[i], absl::StrCat("{\"step\":", i + 1, ",")) &&
                absl::EndsWith(lines[i], "}"))
        << lines[i];
  }
}

TEST_F(JobTest, NonFiniteInitWeightsAreRefusedNamingFileAndTensor) {
  auto job = Job({"logging.run_dir="});
  ASSERT_TRUE(job.ok());
  const GptConfig gpt = GptConfigFromJob(*job);
  const ParamTable layout = GptParamLayout(gpt);
  std::vector<float> params(layout.total(), 0.01f);
  const ParamSpec& victim = layout.specs()[layout.specs().size() / 2];
  params[victim.offset + 3] = std::numeric_limits<float>::quiet_NaN();
  const std::string path = dir_ + "/nan.loom.bin";
  ASSERT_TRUE(WriteLoomModelFile(path, gpt, params).ok());
  job->mutable_model()->set_init_from(path);
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_FALSE(t.ok());
  const std::string msg(t.status().message());
  EXPECT_TRUE(absl::StrContains(msg, path)) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "tensor " + victim.name + " holds 1 non-finite")) << msg;
  EXPECT_FALSE(absl::StrContains(msg, "lr")) << msg;
}

TEST(GemmPeakTest, MeasuredOnceThenReadFromTheCache) {
  const testing::ScopedTempDir tmp("gemm_peak_cache");
  const std::string cache = tmp.path();
  ScopedEnv xdg("XDG_CACHE_HOME", cache);
  const std::string path = bench::GemmPeakCachePath();
  EXPECT_EQ(path, cache + "/loom/gemm_peak.tsv");
  auto first = bench::GemmPeak(CpuDevice());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GT(first->flops, 1e8);
  EXPECT_TRUE(absl::StrContains(first->description, "now cached in " + path)) << first->description;
  // The cached figure is what the next run uses (proved by editing it).
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> fields = absl::StrSplit(absl::StripSuffix(*text, "\n"), '\t');
  ASSERT_EQ(fields.size(), 2u) << *text;
  ASSERT_TRUE(AtomicWriteFile(path, fields[0] + "\t1234567\n").ok());
  auto second = bench::GemmPeak(CpuDevice());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->flops, 1234567);
  EXPECT_TRUE(absl::StrContains(second->description, "cached in " + path));
}

// A peak cached while the machine was busy is raised by a run that beat it (the trainer does,
// train/step_metrics.h), never lowered; other machines' entries stay.
TEST(GemmPeakTest, ACachedPeakIsRaisedNeverLowered) {
  const testing::ScopedTempDir tmp("gemm_peak_raise");
  ScopedEnv xdg("XDG_CACHE_HOME", tmp.path());
  const std::string path = bench::GemmPeakCachePath();
  auto none = bench::RaiseCachedGemmPeak(CpuDevice(), 2e6);  // no cache yet: one entry
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(*none);
  auto first = bench::GemmPeak(CpuDevice());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->flops, 2e6);
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_TRUE(AtomicWriteFile(path, "other cpu | omp 9 | openblas 9\t5e9\n" + *text).ok());
  auto higher = bench::RaiseCachedGemmPeak(CpuDevice(), 3e6);
  ASSERT_TRUE(higher.ok()) << higher.status();
  EXPECT_TRUE(*higher);
  auto lower = bench::RaiseCachedGemmPeak(CpuDevice(), 1e6);
  ASSERT_TRUE(lower.ok()) << lower.status();
  EXPECT_FALSE(*lower);
  auto second = bench::GemmPeak(CpuDevice());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->flops, 3e6);
  text = ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(absl::StartsWith(*text, "other cpu | omp 9 | openblas 9\t5e9\n")) << *text;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(*text, '\n', absl::SkipEmpty())).size(), 2u)
      << *text;
}

}  // namespace
}  // namespace loom

// ---- the CUDA parts of the check (no GPU needed) -------------------------------------------

namespace loom {
namespace {

TEST(CudaJobCheckTest, NcclCommunicatorsOnlyForGroupsThatMoveDeviceTensors) {
  EXPECT_EQ(NcclCommunicatorCount(1, 1, 1), 0);  // one GPU: no NCCL at all
  EXPECT_EQ(NcclCommunicatorCount(1, 8, 1), 1);  // dp
  EXPECT_EQ(NcclCommunicatorCount(8, 1, 1), 1);  // tp
  EXPECT_EQ(NcclCommunicatorCount(2, 2, 2), 4);  // tp, dp, pp and the embedding pair
  EXPECT_EQ(NcclCommunicatorCount(1, 1, 1, 2), 2);  // the cp ring and dp x cp
  EXPECT_EQ(NcclCommunicatorCount(2, 2, 2, 2), 6);
  EXPECT_EQ(GpuMemoryReserve(1, 1, 1), kGpuOpsReserve);
  EXPECT_EQ(GpuMemoryReserve(1, 8, 1), kGpuOpsReserve + kNcclCommReserve);
  // The old fixed reserve was 512 MiB whatever the layout; one GPU now keeps back 64 MiB.
  EXPECT_LT(GpuMemoryReserve(1, 1, 1), int64_t{512} << 20);
}

JobConfig ShapeJob(int hidden, int heads, int micro, int tp) {
  JobConfig c;
  c.mutable_model()->set_hidden(hidden);
  c.mutable_model()->set_heads(heads);
  c.mutable_parallel()->set_micro_batch_size(micro);
  c.mutable_parallel()->set_tp(tp);
  return c;
}

TEST(CudaJobCheckTest, ShapesTheKernelsCannotRunAreNamed) {
  EXPECT_TRUE(CudaKernelShapeProblems(ShapeJob(768, 12, 64, 1)).empty());  // GPT-2 124M
  EXPECT_TRUE(CudaKernelShapeProblems(ShapeJob(1024, 8, 1, 1)).empty());   // head dim 128
  auto wide = CudaKernelShapeProblems(ShapeJob(2048, 8, 1, 1));            // head dim 256
  ASSERT_EQ(wide.size(), 1u);
  EXPECT_NE(wide[0].find("model.hidden / model.heads = 2048 / 8 = head dim 256"), std::string::npos)
      << wide[0];
  EXPECT_NE(wide[0].find("up to 128"), std::string::npos) << wide[0];
  auto tall = CudaKernelShapeProblems(ShapeJob(768, 12, 8192, 1));  // 98304 blocks
  ASSERT_EQ(tall.size(), 1u);
  EXPECT_NE(tall[0].find("parallel.micro_batch_size x model.heads / parallel.tp = 8192 x 12 = "
                         "98304"),
            std::string::npos)
      << tall[0];
  EXPECT_NE(tall[0].find("65535"), std::string::npos);
  // Tensor parallelism divides the heads a rank launches: the same batch fits at tp 2.
  EXPECT_TRUE(CudaKernelShapeProblems(ShapeJob(768, 12, 8192, 2)).empty());
}

// Refused only when the job would run on CUDA: the CPU backend runs any head dim.
TEST_F(JobTest, KernelShapesAreCheckedOnlyForCudaJobs) {
  auto cpu = Job({"model.hidden=512", "model.heads=2"});  // head dim 256
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const JobCheck on_cpu = CheckJob(*cpu, 1);
  for (const std::string& p : on_cpu.problems)
    EXPECT_EQ(p.find("head dim"), std::string::npos) << p;
  auto cuda = Job({"model.hidden=512", "model.heads=2", "runtime.backend=CUDA"});
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  const JobCheck on_cuda = CheckJob(*cuda, 1);
  bool named = false;
  for (const std::string& p : on_cuda.problems)
    named |= p.find("head dim 256") != std::string::npos;
  EXPECT_TRUE(named) << absl::StrJoin(on_cuda.problems, "\n");
}

}  // namespace
}  // namespace loom
