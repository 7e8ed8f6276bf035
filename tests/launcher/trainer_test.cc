// The single-process trainer end to end on the CPU backend: it reproduces PyTorch's 10 clipped
// AdamW steps on the fixture models (with and without gradient accumulation), a shortened run
// on repetitive text learns, metrics.jsonl has one 9-digit line per step, the same seed gives
// bit-identical losses, and a bad data path or init file is reported by Create naming the field.
#include "launcher/trainer.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "launcher/config.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "tests/launcher/job_testing.h"

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
  const std::string dir = testing::FreshTempDir("trainer_golden");
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
    dir_ = testing::FreshTempDir("trainer_run");
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
    std::vector<float> losses;
    for (int i = 0; i < n; ++i) {
      auto l = (*t)->Step();
      EXPECT_TRUE(l.ok()) << l.status();
      if (!l.ok()) break;
      losses.push_back(*l);
    }
    return losses;
  }

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

}  // namespace
}  // namespace loom
