// Resume scenarios the layout-equivalence tests cannot see (they compare against a 1-rank run
// that would carry the same bug), in one process:
// - another model: a checkpoint saved with any one model field changed is refused with a
//   message naming that field, including the changes no tensor shape shows (model.heads,
//   model.norm_eps, model.rope_theta, LLaMA's model.max_seq, and a model.vocab that pads to the
//   same rows: 257 and 300 both pad to 384), for checkpoint.resume and for model.init_from;
//   model.vocab_pad_multiple (padding only) is not a different model;
// - pruning after resuming from an older step: resuming from step_3 while step_6 exists, each
//   later save with keep_last leaves `latest` naming a directory that exists and verifies, and
//   keeps this run's newest steps (the abandoned run's higher-numbered ones go first);
// - the LR schedule across a stop after warm-up: a run stopped in the decay (cosine and linear)
//   and resumed gives the uninterrupted run's losses and weights bit for bit, and the LR each
//   step logged is the closed-form value (warm-up lr * (s + 1) / W, then the decay over
//   lr_schedule.total_steps, not over runtime.stop_at_step);
// - against PyTorch: the fixture model trained with torch.optim.lr_scheduler's warm-up and cosine
//   or linear decay, clipping and AdamW with weight decay, stopped after step 5 and resumed: the
//   rate, loss and gradient norm of every step are PyTorch's.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "checkpoint/checkpoint.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "tests/train/job_testing.h"
#include "train/lr_schedule.h"
#include "train/trainer.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

class CheckpointResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    ByteTokenizer tok;
    std::vector<uint16_t> ids;
    for (int i = 0; i < 60; ++i) {
      tok.Encode(absl::StrCat("line ", i, ": the quick brown fox jumps over the lazy dog. "), &ids);
    }
    ASSERT_TRUE(WriteShard(dir_ + "/train_000.bin", ids, ShardFormat::kLlmc).ok());
  }

  // A tiny job; `model` is the body of its model { } block.
  std::string Job(const std::string& model, const std::string& extra = "") const {
    return absl::StrCat("model { ", model, " }\n", R"(
parallel { micro_batch_size: 2 global_batch_size: 4 }
optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 decay_style: COSINE min_lr: 0.001 total_steps: 8 }
data { train: "$DIR/train_*.bin" seq_len: 16 }
logging { interval: 100 }
runtime { backend: CPU seed: 3 }
)",
                        extra);
  }

  std::unique_ptr<Trainer> Make(const std::string& text,
                                const std::vector<std::string>& overrides = {}) {
    auto job = testing::JobFromText(text, dir_, overrides);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return nullptr;
    auto t = Trainer::Create(*job, World::Self());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }

  // One step of `model`, saved into <dir_>/<name>; returns the step directory.
  std::string SaveOneStep(const std::string& model, const std::string& name) {
    const std::string ck = absl::StrCat(dir_, "/", name);
    auto t = Make(Job(model, absl::StrCat("checkpoint { dir: \"", ck, "\" }\n")));
    if (t == nullptr) return "";
    EXPECT_TRUE(t->Step().ok());
    EXPECT_TRUE(t->SaveCheckpoint().ok());
    EXPECT_TRUE(t->FinishCheckpoint().ok());
    return absl::StrCat(ck, "/", StepDirName(1));
  }

  testing::ScopedTempDir tmp_{"ckpt_resume"};
  std::string dir_;
};

constexpr char kGpt2[] =
    "family: GPT2 layers: 1 heads: 2 hidden: 16 vocab: 257 max_seq: 16 vocab_pad_multiple: 128";
constexpr char kLlama[] =
    "family: LLAMA layers: 1 heads: 4 kv_heads: 2 hidden: 16 vocab: 257 max_seq: 16 "
    "vocab_pad_multiple: 128";

// `base` with `from` replaced by `to` (which must occur).
std::string With(const std::string& base, const std::string& from, const std::string& to) {
  EXPECT_TRUE(absl::StrContains(base, from)) << base << " lacks " << from;
  return absl::StrReplaceAll(base, {{from, to}});
}

TEST_F(CheckpointResumeTest, EveryModelFieldIsComparedEvenWherePaddingHidesIt) {
  const std::string gpt2_step = SaveOneStep(kGpt2, "gpt2");
  const std::string llama_step = SaveOneStep(kLlama, "llama");
  ASSERT_FALSE(gpt2_step.empty());
  ASSERT_FALSE(llama_step.empty());
  struct Case {
    std::string model;  // the resuming job's model block
    std::string step_dir;
    std::string field;  // the field the refusal must name
  };
  const std::vector<Case> cases = {
      // GPT-2: vocab 300 pads to 384 rows like 257: no shape differs.
      {With(kGpt2, "vocab: 257", "vocab: 300"), gpt2_step, "model.vocab"},
      {With(kGpt2, "vocab: 257", "vocab: 258"), gpt2_step, "model.vocab"},
      {With(kGpt2, "vocab: 257", "vocab: 400"), gpt2_step, "model.vocab"},  // 512 rows
      // Two heads of 8 or four of 4: the same qkv and projection shapes.
      {With(kGpt2, "heads: 2", "heads: 4"), gpt2_step, "model.heads"},
      {kGpt2 + std::string(" norm_eps: 1e-6"), gpt2_step, "model.norm_eps"},
      {With(kGpt2, "layers: 1", "layers: 2"), gpt2_step, "model.layers"},
      {With(kGpt2, "hidden: 16", "hidden: 32"), gpt2_step, "model.hidden"},
      {kGpt2 + std::string(" ffn_hidden: 32"), gpt2_step, "model.ffn_hidden"},
      {With(kGpt2, "max_seq: 16", "max_seq: 32"), gpt2_step, "model.max_seq"},
      {kGpt2 + std::string(" tied_embeddings: false"), gpt2_step, "model.tied_embeddings"},
      {With(kGpt2, "family: GPT2", "family: LLAMA"), gpt2_step, "model.family"},
      // LLaMA: RoPE has no table in the checkpoint, so neither its base nor max_seq shows.
      {kLlama + std::string(" rope_theta: 500000"), llama_step, "model.rope_theta"},
      {With(kLlama, "max_seq: 16", "max_seq: 32"), llama_step, "model.max_seq"},
      {With(kLlama, "vocab: 257", "vocab: 300"), llama_step, "model.vocab"},
      {With(kLlama, "kv_heads: 2", "kv_heads: 4"), llama_step, "model.kv_heads"},
      // Four heads of 4 with 2 kv heads, or two heads of 8 with one: qkv is 32 x 16 both ways.
      {With(With(kLlama, "heads: 4 kv", "heads: 2 kv"), "kv_heads: 2", "kv_heads: 1"), llama_step,
       "model.heads"},
      {kLlama + std::string(" norm_eps: 1e-6"), llama_step, "model.norm_eps"},
      {kLlama + std::string(" tied_embeddings: true"), llama_step, "model.tied_embeddings"},
  };
  for (const Case& c : cases) {
    for (bool init_from : {false, true}) {
      // Weights only (model.init_from) is held to the same rule as a resume.
      const std::string extra =
          init_from ? "" : absl::StrCat("checkpoint { resume: \"", c.step_dir, "\" }\n");
      std::string text = Job(c.model, extra);
      if (init_from) {
        text = absl::StrReplaceAll(
            text, {{"model { ", absl::StrCat("model { init_from: \"", c.step_dir, "\" ")}});
      }
      auto job = testing::JobFromText(text, dir_);
      ASSERT_TRUE(job.ok()) << c.model << ": " << job.status();
      auto t = Trainer::Create(*job, World::Self());
      const std::string what = absl::StrCat(init_from ? "model.init_from" : "checkpoint.resume",
                                            " with { ", c.model, " }");
      if (t.ok()) {
        ADD_FAILURE() << what << ": loaded a checkpoint of another model";
        continue;
      }
      EXPECT_TRUE(absl::StrContains(t.status().message(), c.field))
          << what << ": the refusal does not name " << c.field << ": " << t.status();
      EXPECT_TRUE(absl::StrContains(t.status().message(), c.step_dir))
          << what << ": the refusal does not name the checkpoint: " << t.status();
    }
  }
  // Only the padding differs: the same model, it loads (384 rows saved, 264 now).
  auto t = Make(Job(With(kGpt2, "vocab_pad_multiple: 128", "vocab_pad_multiple: 8"),
                    absl::StrCat("checkpoint { resume: \"", gpt2_step, "\" }\n")));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->step(), 1);
}

// The manifest alone (as a tool that knows no GPT reads it): a table whose padded vocabulary
// has other real rows than the saved one is refused even when the padded shapes agree.
TEST_F(CheckpointResumeTest, TableCheckComparesTheRealRowsBehindThePadding) {
  const std::string step = SaveOneStep(kGpt2, "table");
  ASSERT_FALSE(step.empty());
  auto reader = CheckpointReader::Open(step);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto t = Make(Job(kGpt2));
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE((*reader)->CheckTable(t->model().layout()).ok());
  auto t300 = Make(Job(With(kGpt2, "vocab: 257", "vocab: 300")));
  ASSERT_NE(t300, nullptr);
  ASSERT_EQ(t300->model().layout().Find("wte.weight").value()->global_shape.dims()[0], 384);
  const absl::Status s = (*reader)->CheckTable(t300->model().layout());
  ASSERT_FALSE(s.ok()) << "a vocab-300 table passed against a vocab-257 checkpoint";
  EXPECT_TRUE(absl::StrContains(s.message(), "257 real rows")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "300 real rows")) << s;
}

// The step `latest` names exists and verifies.
void ExpectLatestVerifies(const std::string& ck, int64_t want_step, const std::string& when) {
  auto latest = LatestCheckpoint(ck);
  ASSERT_TRUE(latest.ok()) << when << ": " << latest.status();
  ASSERT_TRUE(latest->has_value()) << when << ": no latest";
  EXPECT_EQ(fs::path(**latest).filename().string(), StepDirName(want_step)) << when;
  ASSERT_TRUE(fs::exists(**latest)) << when << ": latest names " << **latest << ", deleted";
  auto reader = CheckpointReader::Open(**latest);
  ASSERT_TRUE(reader.ok()) << when << ": " << reader.status();
  auto bytes = (*reader)->VerifyAll();
  EXPECT_TRUE(bytes.ok()) << when << ": " << bytes.status();
}

TEST_F(CheckpointResumeTest, PruningAfterResumingFromAnOlderStepKeepsWhatLatestNames) {
  for (int keep : {1, 2}) {
    const std::string ck = absl::StrCat(dir_, "/prune_keep", keep);
    {  // Steps 1..6, every one kept.
      auto t = Make(Job(kGpt2, absl::StrCat("checkpoint { dir: \"", ck, "\" interval: 1 }\n")),
                    {"runtime.stop_at_step=6"});
      ASSERT_NE(t, nullptr);
      ASSERT_TRUE(t->Run().ok());
    }
    for (int s = 1; s <= 6; ++s) ASSERT_TRUE(fs::exists(absl::StrCat(ck, "/", StepDirName(s))));
    ExpectLatestVerifies(ck, 6, "before the resume");
    // Back to step 3 explicitly: step_6 and step_5 are the highest-numbered, yet each step
    // just saved is the one `latest` names, so it must survive the pruning.
    {
      auto t = Make(Job(kGpt2, absl::StrCat("checkpoint { dir: \"", ck, "\" resume: \"", ck, "/",
                                            StepDirName(3), "\" keep_last: ", keep, " }\n")));
      ASSERT_NE(t, nullptr);
      ASSERT_EQ(t->step(), 3);
      for (int s = 4; s <= 5; ++s) {
        ASSERT_TRUE(t->Step().ok());
        ASSERT_TRUE(t->SaveCheckpoint().ok());
        const std::string when = absl::StrCat("keep_last ", keep, ", saved step ", s);
        ExpectLatestVerifies(ck, s, when);
        // What is kept is this run's newest: s and the steps just below it. The abandoned run's
        // step_6 (and step_5 until this run saves its own) is pruned first.
        for (int old = 1; old <= 6; ++old) {
          const bool kept = old <= s && old > s - keep;
          EXPECT_EQ(fs::exists(absl::StrCat(ck, "/", StepDirName(old))), kept)
              << when << ": step " << old << (kept ? " pruned" : " kept");
        }
      }
    }
    // And a plain AUTO resume continues from there.
    auto t = Make(Job(kGpt2, absl::StrCat("checkpoint { dir: \"", ck, "\" }\n")));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->step(), 5);
  }
}

std::vector<float> Weights(Trainer& t) {
  auto w = GatherGlobalParams(t.model().layout(), t.model().params(), t.groups().tp());
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *w : std::vector<float>();
}

// The learning rate of 0-based step s in closed form: lr 0.01, min_lr 0.001, warm-up 2,
// total 8.
double ClosedFormLr(bool cosine, int s) {
  const double lr = 0.01, min_lr = 0.001;
  if (s < 2) return lr * (s + 1) / 2.0;
  const double p = std::min(1.0, (s - 2) / 6.0);
  return cosine ? min_lr + 0.5 * (lr - min_lr) * (1 + std::cos(M_PI * p)) : lr + (min_lr - lr) * p;
}

// (step, loss, lr) of each metrics.jsonl line.
struct Logged {
  int step;
  float loss;
  double lr;
};
std::vector<Logged> ReadMetrics(const std::string& path) {
  std::vector<Logged> out;
  auto text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    const std::string l(line);
    Logged g;
    g.step = std::atoi(l.c_str() + l.find("\"step\":") + 7);
    g.loss = std::strtof(l.c_str() + l.find("\"loss\":") + 7, nullptr);
    g.lr = std::strtod(l.c_str() + l.find("\"lr\":") + 5, nullptr);
    out.push_back(g);
  }
  return out;
}

TEST_F(CheckpointResumeTest, StopInTheDecayAndResumeIsBitwiseTheUninterruptedRun) {
  constexpr int kTotal = 8, kStop = 5;  // warm-up is steps 1-2; the stop is deep in the decay
  for (bool cosine : {true, false}) {
    const std::string style = cosine ? "COSINE" : "LINEAR";
    const std::string text =
        absl::StrReplaceAll(Job(kGpt2), {{"decay_style: COSINE", "decay_style: " + style}});
    auto ref = Make(text);
    ASSERT_NE(ref, nullptr);
    std::vector<float> ref_losses;
    for (int i = 0; i < kTotal; ++i) {
      auto l = ref->Step();
      ASSERT_TRUE(l.ok()) << l.status();
      ref_losses.push_back(*l);
    }
    const std::vector<float> ref_weights = Weights(*ref);

    const std::string ck = absl::StrCat(dir_, "/lr_", style), run = ck + "_run";
    const std::string with_ck = absl::StrCat(text, "checkpoint { dir: \"", ck, "\" }\n");
    const std::vector<std::string> logging = {"logging.run_dir=" + run, "logging.interval=1"};
    {
      std::vector<std::string> stop = logging;
      stop.push_back(absl::StrCat("runtime.stop_at_step=", kStop));
      auto t = Make(with_ck, stop);
      ASSERT_NE(t, nullptr);
      ASSERT_TRUE(t->Run().ok());
      ASSERT_EQ(t->step(), kStop);
    }
    auto t = Make(with_ck, logging);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->step(), kStop);
    ASSERT_TRUE(t->Run().ok());
    ASSERT_EQ(t->step(), kTotal);
    const std::vector<float> weights = Weights(*t);
    ASSERT_EQ(weights.size(), ref_weights.size());
    EXPECT_EQ(0, std::memcmp(weights.data(), ref_weights.data(), weights.size() * 4))
        << style << ": the final weights after a stop at step " << kStop
        << " differ from the uninterrupted run's";
    const std::vector<Logged> logged = ReadMetrics(run + "/metrics.jsonl");
    ASSERT_EQ(logged.size(), static_cast<size_t>(kTotal)) << style;
    for (int i = 0; i < kTotal; ++i) {
      EXPECT_EQ(logged[i].step, i + 1) << style;
      EXPECT_EQ(logged[i].loss, ref_losses[i])
          << style << ": loss of step " << i + 1 << " (stopped at " << kStop
          << ") differs from the uninterrupted run's";
      EXPECT_NEAR(logged[i].lr, ClosedFormLr(cosine, i), 1e-8 * 0.01)
          << style << ": lr of step " << i + 1;
    }
  }
}

// Against PyTorch: the fixture model (tests/fixtures/model/gpt2_schedule.bin, written by
// tools/gen_model_fixture.py) trained 10 steps with warm-up and cosine or linear decay from
// torch.optim.lr_scheduler, clipping at 1 and AdamW with weight decay 0.1 on the 2-D weights;
// loom's run stops after step 5 (in the decay), saves, and a new trainer resumes it. The rate
// of every step, the losses and the gradient norms must be PyTorch's: the schedule, clipping
// and the optimizer checked by a reference that shares none of loom's code, across a resume.
TEST_F(CheckpointResumeTest, ScheduledTrainingAcrossAResumeMatchesPyTorch) {
  auto fx = testing::LoadModelFixture("gpt2");
  ASSERT_TRUE(fx.ok()) << fx.status();
  auto sched = testing::LoadModelFixture("gpt2_schedule");
  ASSERT_TRUE(sched.ok()) << sched.status();
  auto warmup = sched->Int("warmup_steps");
  auto total = sched->Int("total_steps");
  auto min_lr = sched->Get("min_lr");
  ASSERT_TRUE(warmup.ok() && total.ok() && min_lr.ok());
  constexpr int kStop = 5;
  for (const std::string style : {"cosine", "linear"}) {
    auto lrs = sched->Get(style + "/lrs");
    auto want_loss = sched->Get(style + "/step_losses");
    auto want_norm = sched->Get(style + "/grad_norms");
    ASSERT_TRUE(lrs.ok() && want_loss.ok() && want_norm.ok()) << style;
    auto job = testing::FixtureJob(*fx, "gpt2", dir_, 2);
    ASSERT_TRUE(job.ok()) << job.status();
    LrScheduleConfig* s = job->mutable_lr_schedule();
    s->set_warmup_steps(static_cast<int>(*warmup));
    s->set_total_steps(*total);
    s->set_min_lr(min_lr->data_as<float>()[0]);
    s->set_decay_style(style == "cosine" ? LrScheduleConfig::COSINE : LrScheduleConfig::LINEAR);
    job->mutable_checkpoint()->set_dir(absl::StrCat(dir_, "/torch_", style));
    std::vector<float> losses;
    std::vector<double> norms;
    {
      JobConfig first = *job;
      first.mutable_runtime()->set_stop_at_step(kStop);
      auto t = Trainer::Create(first, World::Self());
      ASSERT_TRUE(t.ok()) << t.status();
      for (int k = 0; k < kStop; ++k) {
        auto l = (*t)->Step();
        ASSERT_TRUE(l.ok()) << l.status();
        losses.push_back(*l);
        norms.push_back((*t)->last_grad_norm());
      }
      ASSERT_TRUE((*t)->SaveCheckpoint().ok());
      ASSERT_TRUE((*t)->FinishCheckpoint().ok());
    }
    auto t = Trainer::Create(*job, World::Self());
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ((*t)->step(), kStop);
    while ((*t)->step() < *total) {
      auto l = (*t)->Step();
      ASSERT_TRUE(l.ok()) << l.status();
      losses.push_back(*l);
      norms.push_back((*t)->last_grad_norm());
    }
    for (int k = 0; k < *total; ++k) {
      const float lr = lrs->data_as<float>()[k];
      EXPECT_NEAR(LearningRate(*job, k), lr, 1e-6 * lr) << style << ": lr of step " << k + 1;
      const float wl = want_loss->data_as<float>()[k], wn = want_norm->data_as<float>()[k];
      EXPECT_NEAR(losses[k], wl, 1e-4 * wl) << style << ": loss of step " << k + 1;
      EXPECT_NEAR(norms[k], wn, 1e-4 * wn) << style << ": gradient norm of step " << k + 1;
    }
  }
}

}  // namespace
}  // namespace loom
