// The single-process trainer end to end on the CPU backend: it reproduces PyTorch's 10 clipped
// AdamW steps on the fixture models (with and without gradient accumulation), a shortened run
// on repetitive text learns, metrics.jsonl has one 9-digit line per step, the same seed gives
// bit-identical losses, a bad data path or init file is reported by Create naming the field,
// BF16 on the CPU is refused, a non-finite loss or gradient norm skips the step before the
// weights change (and ends the run after runtime.max_nonfinite_steps in a row),
// samples are seeded and in the vocabulary, and Run writes TensorBoard events.
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "job/config.h"
#include "train/lr_schedule.h"
#include "metrics/tensorboard.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"

namespace loom {
namespace {

World* TestWorld() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return *w;
}

// ---- against PyTorch ------------------------------------------------------------------------

struct FixtureCase {
  std::string name;
  int micro_batch;  // 2 = the whole batch at once; 1 = two accumulated micro-batches
};

class TrainerGoldenTest : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(TrainerGoldenTest, StepsMatchPyTorch) {
  const FixtureCase& fc = GetParam();
  auto fx = testing::LoadModelFixture(fc.name);
  ASSERT_TRUE(fx.ok()) << fx.status();
  const testing::ScopedTempDir tmp("trainer_golden");
  const std::string dir = tmp.path();
  auto job = testing::FixtureJob(*fx, fc.name, dir, fc.micro_batch);
  ASSERT_TRUE(job.ok()) << job.status();
  auto trainer = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  EXPECT_EQ((*trainer)->numbers().grad_accum_steps, 2 / fc.micro_batch);
  // The trainer's model is the fixture's: same layout size, same padded vocab.
  EXPECT_EQ((*trainer)->numbers().padded_parameters, (*trainer)->model().layout().total());
  auto want_loss = fx->Get("step_losses");
  auto want_norm = fx->Get("grad_norms");
  ASSERT_TRUE(want_loss.ok() && want_norm.ok());
  for (int k = 0; k < want_loss->numel(); ++k) {
    auto loss = (*trainer)->Step();
    ASSERT_TRUE(loss.ok()) << loss.status();
    const float wl = want_loss->data_as<float>()[k], wn = want_norm->data_as<float>()[k];
    EXPECT_NEAR(*loss, wl, 1e-4 * wl) << "step " << k + 1;
    EXPECT_NEAR((*trainer)->last_grad_norm(), wn, 1e-4 * wn) << "step " << k + 1;
  }
  EXPECT_EQ((*trainer)->step(), 10);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainerGoldenTest,
                         ::testing::Values(FixtureCase{"gpt2", 2}, FixtureCase{"gpt2", 1},
                                           FixtureCase{"llama", 2}, FixtureCase{"llama", 1}),
                         [](const auto& info) {
                           return info.param.name + (info.param.micro_batch == 1 ? "_accum" : "");
                         });

// ---- a shortened run on repetitive text -----------------------------------------------------

constexpr char kTinyJob[] = R"(
model { family: GPT2 layers: 2 heads: 2 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 4 global_batch_size: 8 }
optimizer { lr: 0.01 weight_decay: 0.0 grad_clip: 1.0 }
lr_schedule { warmup_steps: 3 decay_style: COSINE min_lr: 0.001 total_steps: 30 }
data { train: "$DIR/data/train_*.bin" seq_len: 32 }
logging { run_dir: "$DIR/run" interval: 1 tensorboard: false }
runtime { backend: CPU seed: 1337 }
)";

class TrainerRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    ASSERT_TRUE(MakeDirs(dir_ + "/data").ok());
    ByteTokenizer tok;
    std::vector<uint16_t> ids;
    for (int i = 0; i < 150; ++i) tok.Encode("the quick brown fox jumps over the lazy dog. ", &ids);
    ASSERT_TRUE(WriteShard(dir_ + "/data/train_000.bin", ids, ShardFormat::kLlmc).ok());
    ASSERT_TRUE(AtomicWriteFile(dir_ + "/data/tokenizer.json", tok.DescriptionJson()).ok());
  }

  absl::StatusOr<JobConfig> Job(const std::vector<std::string>& overrides = {}) {
    return testing::JobFromText(kTinyJob, dir_, overrides);
  }

  // Steps a fresh trainer `n` times and returns the losses.
  std::vector<float> StepLosses(const JobConfig& job_in, int n) {
    JobConfig job = job_in;
    job.mutable_logging()->clear_run_dir();  // stepped by hand: no metrics, no run dir in use
    auto t = Trainer::Create(job, TestWorld());
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return {};
    return testing::Steps(**t, n).losses;
  }

  testing::ScopedTempDir tmp_{"trainer_run"};
  std::string dir_;
};

TEST_F(TrainerRunTest, ShortRunLearnsAndLogsEveryStep) {
  auto job = Job();
  ASSERT_TRUE(job.ok()) << job.status();
  auto trainer = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Run().ok());
  EXPECT_EQ((*trainer)->step(), 30);

  auto text = ReadFile(dir_ + "/run/metrics.jsonl");
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 30u);
  std::vector<float> losses;
  for (int i = 0; i < 30; ++i) {
    const std::string& line = lines[i];
    EXPECT_TRUE(absl::StartsWith(line, absl::StrCat("{\"step\":", i + 1, ",\"loss\":"))) << line;
    for (const char* key : {"\"lr\":", "\"grad_norm\":", "\"tokens_per_s\":", "\"peak_bytes\":"}) {
      EXPECT_TRUE(absl::StrContains(line, key)) << line << " lacks " << key;
    }
    const size_t at = line.find("\"loss\":") + 7;
    losses.push_back(std::strtof(line.c_str() + at, nullptr));
  }
  // The same job stepped by hand gives the losses the log holds, written with 9 significant
  // digits (so they read back as the same float).
  std::vector<float> stepped = StepLosses(*job, 4);
  ASSERT_EQ(stepped.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const std::string want = absl::StrFormat("\"loss\":%.9g,", stepped[i]);
    EXPECT_TRUE(absl::StrContains(lines[i], want)) << lines[i] << " lacks " << want;
    EXPECT_EQ(losses[i], stepped[i]);
  }
  // Learned: from about ln(257) = 5.55 to well below it (about 1.8 after these 30 steps). The
  // text repeats every 45 bytes, so after the first few characters of a sequence every next
  // byte is predictable.
  const double ln_v = std::log(257.0);
  EXPECT_GT(losses.front(), 0.9 * ln_v);
  EXPECT_LT(losses.back(), 0.45 * ln_v)
      << "losses: first " << losses.front() << ", last " << losses.back();
}

TEST_F(TrainerRunTest, SameSeedSameLossesBitForBit) {
  auto job = Job();
  ASSERT_TRUE(job.ok()) << job.status();
  std::vector<float> a = StepLosses(*job, 5), b = StepLosses(*job, 5);
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  // A different seed starts from other weights.
  auto other = Job({"runtime.seed=7", "data.seed=1337"});
  ASSERT_TRUE(other.ok());
  std::vector<float> c = StepLosses(*other, 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_NE(c[0], a[0]);
}

TEST_F(TrainerRunTest, BadDataPathNamesTheField) {
  auto job = Job({absl::StrCat("data.train=", dir_, "/nowhere/train_*.bin")});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), "data.train")) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "nowhere")) << t.status();
}

TEST_F(TrainerRunTest, MissingInitFileNamesTheField) {
  const std::string missing = dir_ + "/no_such_model.bin";
  auto job = Job({"model.init_from=" + missing});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), "model.init_from")) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), missing)) << t.status();
}

TEST_F(TrainerRunTest, InitFileOfAnotherShapeNamesTheFields) {
  // The GPT-2 fixture model (C = 32, vocab 64) does not fit this job's vocab (257).
  const std::string other = testing::ModelFixturePath("gpt2.llmc.bin");
  auto job = Job({"model.init_from=" + other});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), "model.init_from")) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "model.vocab: job has 257, file has 64"))
      << t.status();
}

TEST_F(TrainerRunTest, TokenizerLargerThanModelVocabIsRefused) {
  // data prepare left a BPE tokenizer (1004 ids) beside shards for a model of vocab 257.
  std::filesystem::copy_file(testing::SourceDir() + "/tests/fixtures/tokenizer/gpt2.tokenizer.json",
                             dir_ + "/data/tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto job = Job();
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), "model.vocab is 257")) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "has 1004 ids")) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "tokenizer.json")) << t.status();
  // A model with room for every id trains on the same shards.
  auto fits = Job({"model.vocab=1004"});
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_TRUE(Trainer::Create(*fits, TestWorld()).ok());
}

// BF16 with backend CPU is refused by the config check; with backend AUTO on a machine without
// a GPU the backend is only known in Create, which refuses it there.
TEST_F(TrainerRunTest, Bf16OnTheCpuIsRefused) {
  auto cpu = Job({"precision=BF16"});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto t = Trainer::Create(*cpu, TestWorld());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "precision BF16 needs a GPU")) << t.status();

  if (CudaDeviceCount() > 0) GTEST_SKIP() << "backend AUTO picks the GPU here";
  auto autob = Job({"precision=BF16", "runtime.backend=AUTO"});
  ASSERT_TRUE(autob.ok()) << autob.status();
  t = Trainer::Create(*autob, TestWorld());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "BF16 needs a CUDA GPU")) << t.status();
}

// Bitwise differences between two weight snapshots.
size_t Changed(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  size_t changed = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    changed += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  }
  return changed;
}

// A NaN in the weights poisons every later loss and gradient: each such step is skipped before
// AdamW applies it (weights untouched, the step counted), and the runtime.max_nonfinite_steps-th
// in a row ends the run naming the step.
TEST_F(TrainerRunTest, NonFiniteStepsAreSkippedThenEndTheRun) {
  auto job = Job({"runtime.max_nonfinite_steps=3"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Step().ok());
  auto wpe = (*t)->model().layout().Find("wpe.weight");
  ASSERT_TRUE(wpe.ok()) << wpe.status();
  const Tensor& params = (*t)->model().params();
  params.data_as<float>()[(*wpe)->offset] = std::numeric_limits<float>::quiet_NaN();  // position 0
  auto before = params.ToFloatVector();
  ASSERT_TRUE(before.ok());

  for (int step = 2; step <= 3; ++step) {
    auto loss = (*t)->Step();
    ASSERT_TRUE(loss.ok()) << "step " << step << " was not skipped: " << loss.status();
    EXPECT_TRUE(std::isnan(*loss));
    EXPECT_EQ((*t)->step(), step);
    auto after = params.ToFloatVector();
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(Changed(*before, *after), 0u) << "the skipped step " << step << " updated weights";
  }
  auto loss = (*t)->Step();
  ASSERT_FALSE(loss.ok()) << "a third non-finite step in a row went on: loss " << *loss;
  EXPECT_TRUE(absl::StrContains(loss.status().message(), "step 4: training loss nan"))
      << loss.status();
  EXPECT_TRUE(absl::StrContains(loss.status().message(), "runtime.max_nonfinite_steps = 3"))
      << loss.status();
  auto after = params.ToFloatVector();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(Changed(*before, *after), 0u) << "the failing step updated weights";
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

// LOOM_FAULT=nan poisons one step's loss: that step is skipped (weights untouched, counted in
// metrics.jsonl), the next one trains again and resets the count in a row.
TEST_F(TrainerRunTest, InjectedNanLossSkipsOneStepAndTrainingGoesOn) {
  ScopedEnv fault("LOOM_FAULT", "nan"), rank("LOOM_FAULT_RANK", "0"), at("LOOM_FAULT_STEP", "2");
  auto job = Job({"runtime.max_nonfinite_steps=2", "lr_schedule.total_steps=4",
                  "logging.run_dir=" + dir_ + "/run_nan"});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok()) << "one non-finite step ended the run";
  EXPECT_EQ((*t)->step(), 4);
  auto text = ReadFile(dir_ + "/run_nan/metrics.jsonl");
  ASSERT_TRUE(text.ok()) << text.status();
  const std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << *text;
  EXPECT_EQ(lines[0].find("skipped_steps"), std::string::npos) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[1], "\"loss\":null")) << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[1], "\"skipped_steps\":1")) << lines[1];
  EXPECT_FALSE(absl::StrContains(lines[2], "\"loss\":null")) << lines[2];
  EXPECT_TRUE(absl::StrContains(lines[3], "\"skipped_steps\":1")) << lines[3];
}

// The skipped step leaves weights and optimizer state as they were: stepping by hand, the
// weights after the poisoned step 2 are those after step 1, and step 3 moves them again.
TEST_F(TrainerRunTest, InjectedNanLeavesTheWeightsOfTheStepBefore) {
  ScopedEnv fault("LOOM_FAULT", "nan"), at("LOOM_FAULT_STEP", "2");
  auto job = Job();
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Step().ok());
  auto before = (*t)->model().params().ToFloatVector();
  ASSERT_TRUE(before.ok());
  auto loss = (*t)->Step();
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_TRUE(std::isnan(*loss));
  auto after = (*t)->model().params().ToFloatVector();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(Changed(*before, *after), 0u);
  loss = (*t)->Step();
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_TRUE(std::isfinite(*loss));
  auto later = (*t)->model().params().ToFloatVector();
  ASSERT_TRUE(later.ok());
  EXPECT_GT(Changed(*after, *later), 0u) << "step 3 after the skipped step did not train";
}

TEST(FaultInjectorTest, MalformedVariablesAreErrorsNamingThem) {
  {
    ScopedEnv fault("LOOM_FAULT", "crash");
    auto f = FaultInjector::FromEnv(0);
    ASSERT_FALSE(f.ok());
    EXPECT_TRUE(absl::StrContains(f.status().message(), "LOOM_FAULT=\"crash\"")) << f.status();
  }
  {
    ScopedEnv fault("LOOM_FAULT", "nan"), at("LOOM_FAULT_STEP", "0");
    auto f = FaultInjector::FromEnv(0);
    ASSERT_FALSE(f.ok());
    EXPECT_TRUE(absl::StrContains(f.status().message(), "LOOM_FAULT_STEP")) << f.status();
  }
  {
    ScopedEnv fault("LOOM_FAULT", "stall"), rank("LOOM_FAULT_RANK", "1");
    auto f = FaultInjector::FromEnv(0);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_FALSE(f->armed()) << "rank 0 armed a fault meant for rank 1";
    double loss = 1;
    EXPECT_TRUE(f->AtStep(1, &loss).ok());  // would stall forever if armed
  }
  auto none = FaultInjector::FromEnv(0);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->armed());
}

TEST_F(TrainerRunTest, SamplesAreSeededAndInTheVocabulary) {
  auto job = Job();
  ASSERT_TRUE(job.ok()) << job.status();
  auto a = Trainer::Create(*job, TestWorld());
  auto b = Trainer::Create(*job, TestWorld());
  ASSERT_TRUE(a.ok() && b.ok());
  // Padded vocabulary rows exist (and must never be sampled).
  ASSERT_GT((*a)->model().config().padded_vocab, 257);
  const std::vector<int32_t> prompt = {'t', 'h', 'e'};
  auto sa = (*a)->Sample(prompt, 20);
  auto sb = (*b)->Sample(prompt, 20);
  ASSERT_TRUE(sa.ok() && sb.ok()) << sa.status() << sb.status();
  ASSERT_EQ(sa->size(), 20u);
  EXPECT_EQ(*sa, *sb);
  for (int32_t id : *sa) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 257);
  }
  // The same trainer again: the stream depends on (seed, step) only, not on earlier calls.
  auto again = (*a)->Sample(prompt, 20);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *sa);
  // Top-k from a random model: not one token over and over.
  EXPECT_GT(std::set<int32_t>(sa->begin(), sa->end()).size(), 5u);
  // Another seed: other weights and another stream.
  auto other_job = Job({"runtime.seed=99"});
  ASSERT_TRUE(other_job.ok());
  auto c = Trainer::Create(*other_job, TestWorld());
  ASSERT_TRUE(c.ok());
  auto sc = (*c)->Sample(prompt, 20);
  ASSERT_TRUE(sc.ok());
  EXPECT_NE(*sc, *sa);
  EXPECT_FALSE((*a)->Sample({}, 5).ok());

  // The padded vocabulary rows' logits are 0 (zero rows of the tied embedding). Give every real
  // token the same negative logit (equal real embedding rows, final LayerNorm output a constant
  // -1 vector): top-k over the padded ids as well would now pick only padded ids.
  GptModel& m = (*a)->model();
  auto wte = m.layout().Find("wte.weight");
  auto lnf_w = m.layout().Find("ln_f.weight");
  auto lnf_b = m.layout().Find("ln_f.bias");
  ASSERT_TRUE(wte.ok() && lnf_w.ok() && lnf_b.ok());
  float* p = m.params().data_as<float>();
  const int64_t C = m.config().hidden;
  std::fill(p + (*wte)->offset, p + (*wte)->offset + 257 * C, 0.01f);
  std::fill(p + (*lnf_w)->offset, p + (*lnf_w)->offset + C, 0.0f);
  std::fill(p + (*lnf_b)->offset, p + (*lnf_b)->offset + C, -1.0f);
  auto flat = (*a)->Sample(prompt, 20);
  ASSERT_TRUE(flat.ok()) << flat.status();
  ASSERT_EQ(flat->size(), 20u);
  for (int32_t id : *flat) EXPECT_LT(id, 257) << "sampled a padded vocabulary id";
}

// Run writes TensorBoard events: one per logged step, with the loss Step returns, the
// schedule's lr and, at an evaluation step, the validation loss; the last step is evaluated
// too although 3 is not a multiple of eval_interval = 2.
TEST_F(TrainerRunTest, RunWritesTensorBoardEvents) {
  auto job = Job({"logging.tensorboard=true", "logging.jsonl=false", "logging.interval=2",
                  "lr_schedule.total_steps=3", "logging.eval_interval=2", "logging.eval_batches=2",
                  absl::StrCat("data.val=", dir_, "/data/train_000.bin")});
  ASSERT_TRUE(job.ok()) << job.status();
  {
    auto t = Trainer::Create(*job, TestWorld());
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Run().ok());
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/run/metrics.jsonl"));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/run")) {
    if (e.path().filename() == "run_id") continue;  // the run's id (metrics/run_dir.h)
    files.push_back(e.path().string());
  }
  ASSERT_EQ(files.size(), 1u);
  EXPECT_TRUE(absl::StrContains(files[0], "events.out.tfevents.")) << files[0];
  auto events = ReadEventFile(files[0]);
  ASSERT_TRUE(events.ok()) << events.status();
  // The file version, then steps 2 (the interval, evaluated) and 3 (the last step, evaluated).
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].file_version(), "brain.Event:2");
  const std::vector<float> losses = StepLosses(*job, 3);
  ASSERT_EQ(losses.size(), 3u);
  for (int k = 1; k <= 2; ++k) {
    const tb::Event& e = (*events)[k];
    const int64_t step = k + 1;
    EXPECT_EQ(e.step(), step);
    std::map<std::string, float> v;
    for (const auto& value : e.summary().value()) v[value.tag()] = value.simple_value();
    ASSERT_TRUE(v.count("train/loss") && v.count("train/lr") && v.count("train/grad_norm"))
        << "step " << step;
    EXPECT_EQ(v["train/loss"], losses[step - 1]) << "step " << step;
    EXPECT_EQ(v["train/lr"], static_cast<float>(LearningRate(*job, step - 1))) << "step " << step;
    EXPECT_GT(v["train/grad_norm"], 0.0f);
    ASSERT_EQ(v.count("val/loss"), 1u) << "step " << step;
    EXPECT_GT(v["val/loss"], 0.0f);
    EXPECT_LT(v["val/loss"], std::log(257.0f));
  }
}

}  // namespace
}  // namespace loom
