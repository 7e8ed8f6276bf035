// Sharded checkpoints through the trainer, under mpirun (ctest runs it at 8, 4 and 2 ranks):
// - exact resume: a run that stops at step 3 (runtime.stop_at_step, saving on the way out and
//   on checkpoint.interval 2, keep_last 1) and resumes continues bit for bit like a run that
//   never stopped: losses and final weights, on the richest layout of the world (8 ranks: dp 2,
//   tp 2, pp 2; 4 ranks: dp 2, tp 2; 2 ranks: dp 2; distributed optimizer on);
// - checkpoint.async: a save written while the next step trains resumes exactly as well;
// - resharding: that checkpoint loads on every other (dp, tp, pp) layout of the world (a few of
//   them at 8 ranks) and on one rank, with the distributed optimizer on and off: the state it
//   loaded, saved again from the new layout, equals the original checkpoint bit for bit (weights,
//   both moments, every tensor read whole), and the next losses match the uninterrupted run to
//   1e-5;
// - bad input on one rank: a corrupted byte, a deleted file, a truncated file, another model,
//   a directory without a complete checkpoint and a resume path that does not exist are each
//   refused with a message naming the file (or path) and the problem.
#include <mpi.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoint/checkpoint.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "train/trainer.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "tests/train/train_testing.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

constexpr int kStop = 3, kTotal = 5;

std::string Job(int dp, int tp, bool zero, const std::string& extra, int pp = 1) {
  return absl::StrCat(
      "model { family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32 "
      "vocab_pad_multiple: 8 }\n",
      "parallel { micro_batch_size: 2 global_batch_size: 16 dp: ", dp, " tp: ", tp, " pp: ", pp,
      " distributed_optimizer: ", zero ? "true" : "false", " grad_bucket_mb: 0.01 }\n",
      R"(optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 decay_style: COSINE min_lr: 0.001 total_steps: 5 }
data { train: "$DIR/train_*.bin" seq_len: 32 }
logging { interval: 100 }
runtime { backend: CPU seed: 7 }
)",
      extra);
}

std::unique_ptr<Trainer> Make(const std::string& text, const std::string& dir, World* world,
                              const std::vector<std::string>& overrides = {}) {
  auto job = testing::JobFromText(text, dir, overrides);
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return nullptr;
  auto t = Trainer::Create(*job, world);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

std::vector<float> Steps(Trainer& t, int n) { return testing::Steps(t, n).losses; }

std::vector<float> Weights(Trainer& t) {
  auto w = GatherGlobalParams(t.model().layout(), t.model().params(), t.groups().tp());
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *w : std::vector<float>();
}

// Every tensor of every kind of checkpoint `a` read whole, compared bit for bit with `b`
// (on the rows both hold: a padded vocabulary may be padded differently).
void ExpectSameState(const std::string& a, const std::string& b, const std::string& what,
                     const std::vector<CheckpointKind>& kinds = {WEIGHTS, ADAM_M, ADAM_V}) {
  auto ra = CheckpointReader::Open(a);
  auto rb = CheckpointReader::Open(b);
  ASSERT_TRUE(ra.ok()) << ra.status();
  ASSERT_TRUE(rb.ok()) << rb.status();
  int64_t compared = 0;
  for (const CheckpointTensor& t : (*ra)->manifest().tensors()) {
    const CheckpointTensor* u = nullptr;
    for (const CheckpointTensor& x : (*rb)->manifest().tensors()) {
      if (x.name() == t.name()) u = &x;
    }
    ASSERT_NE(u, nullptr) << what << ": " << t.name() << " missing";
    TensorBox box;
    for (int d = 0; d < t.global_shape_size(); ++d) {
      box.offset.push_back(0);
      box.extent.push_back(std::min(t.global_shape(d), u->global_shape(d)));
    }
    for (CheckpointKind kind : kinds) {
      std::vector<float> x(box.numel()), y(box.numel());
      ASSERT_TRUE((*ra)->ReadBox(t.name(), kind, box, x.data()).ok());
      absl::Status s = (*rb)->ReadBox(t.name(), kind, box, y.data());
      ASSERT_TRUE(s.ok()) << what << ": " << s;
      ASSERT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * 4))
          << what << ": " << t.name() << " " << KindName(kind) << " differs after the reload";
      compared += box.numel();
    }
  }
  EXPECT_GT(compared, 0);
}

std::string FirstStepDir(const std::string& dir) {
  auto latest = LatestCheckpoint(dir);
  EXPECT_TRUE(latest.ok() && latest->has_value()) << dir;
  return latest.ok() && latest->has_value() ? **latest : std::string();
}

// Bad checkpoints, on one rank: each must be refused with `want` in the message.
void ExpectRefused(const std::string& step_dir_or_root, const std::string& data_dir,
                   const std::string& model, const std::vector<std::string>& want) {
  std::string text =
      Job(1, 1, false, absl::StrCat("checkpoint { resume: \"", step_dir_or_root, "\" }\n"));
  if (!model.empty()) {
    text = absl::StrReplaceAll(text, {{"layers: 2 heads: 4 hidden: 32", model}});
  }
  auto job = testing::JobFromText(text, data_dir);
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, World::Self());
  ASSERT_FALSE(t.ok()) << "loaded " << step_dir_or_root;
  for (const std::string& w : want) {
    EXPECT_NE(std::string(t.status().message()).find(w), std::string::npos)
        << "expected '" << w << "' in: " << t.status();
  }
  std::cout << "refused as expected: " << t.status().message() << std::endl;
}

TEST(CheckpointTrainTest, ExactResumeReshardAndBadInput) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  world->state()->timeout = absl::Seconds(120);
  const int n = world->size();
  // One directory for every rank: checkpoints are shared between the ranks. Rank 0 owns it and
  // removes it after the closing barrier, when no rank uses it any more.
  std::optional<testing::ScopedTempDir> owner;
  std::string root;
  if (world->rank() == 0) {
    owner.emplace(absl::StrCat("ckpt_train_np", n));
    root = owner->path();
  }
  {
    int len = static_cast<int>(root.size());
    MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
    root.resize(len);
    MPI_Bcast(root.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  const std::string data = root + "/data";
  if (world->rank() == 0) {
    fs::create_directories(data);
    testing::WriteTextShard(data + "/train_000.bin", "the quick brown fox jumps over the lazy dog.",
                            80);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // The richest layout of the world saves: dp 2, with tp 2 from 4 ranks and pp 2 from 8.
  const int tp = n >= 4 ? 2 : 1, pp = n >= 8 ? 2 : 1, dp = n / (tp * pp);

  // The uninterrupted reference.
  auto ref = Make(Job(dp, tp, true, "", pp), data, world);
  ASSERT_NE(ref, nullptr);
  const std::vector<float> ref_losses = Steps(*ref, kTotal);
  const std::vector<float> ref_weights = Weights(*ref);
  ref.reset();

  // Stop at step 3 (saving at step 2 on the interval and at 3 on the way out), resume.
  const std::string ck = root + "/ck";
  {
    auto t =
        Make(Job(dp, tp, true,
                 absl::StrCat("checkpoint { dir: \"", ck, "\" interval: 2 keep_last: 1 }\n"), pp),
             data, world, {absl::StrCat("runtime.stop_at_step=", kStop)});
    ASSERT_NE(t, nullptr);
    ASSERT_TRUE(t->Run().ok());
    EXPECT_EQ(t->step(), kStop);
  }
  const std::string saved = FirstStepDir(ck);
  EXPECT_EQ(fs::path(saved).filename().string(), StepDirName(kStop));
  EXPECT_FALSE(fs::exists(ck + "/" + StepDirName(2))) << "keep_last 1 kept step 2";
  {
    auto t = Make(Job(dp, tp, true, absl::StrCat("checkpoint { dir: \"", ck, "\" }\n"), pp), data,
                  world);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->step(), kStop);
    EXPECT_EQ(t->resumed_from(), saved);
    const std::vector<float> losses = Steps(*t, kTotal - kStop);
    ASSERT_EQ(losses.size(), static_cast<size_t>(kTotal - kStop));
    for (int i = 0; i < kTotal - kStop; ++i) {
      EXPECT_EQ(losses[i], ref_losses[kStop + i])
          << "loss at step " << kStop + i + 1 << " after the resume is not bitwise equal";
    }
    // This rank's pipeline stage, gathered over its tensor group.
    const std::vector<float> weights = Weights(*t);
    ASSERT_EQ(weights.size(), ref_weights.size());
    EXPECT_EQ(0, std::memcmp(weights.data(), ref_weights.data(), weights.size() * 4))
        << "final weights after the resume are not bitwise equal";
    if (world->rank() == 0) {
      std::cout << "exact resume on dp " << dp << " tp " << tp << " pp " << pp << ": bitwise equal"
                << std::endl;
    }
  }

  // checkpoint.async: step 2's write runs behind step 3; resuming from step 2 is exact too (the
  // snapshot was taken before training changed the buffers).
  {
    const std::string ck_async = root + "/ck_async";
    {
      auto t = Make(
          Job(dp, tp, true,
              absl::StrCat("checkpoint { dir: \"", ck_async, "\" interval: 2 async: true }\n"), pp),
          data, world, {absl::StrCat("runtime.stop_at_step=", kStop)});
      ASSERT_NE(t, nullptr);
      // The write waits until step 3 has changed the weights and moments.
      setenv("LOOM_CKPT_TEST_ASYNC_DELAY_MS", "300", 1);
      ASSERT_TRUE(t->Run().ok());
      unsetenv("LOOM_CKPT_TEST_ASYNC_DELAY_MS");
    }
    const std::string step2 = ck_async + "/" + StepDirName(2);
    auto t = Make(Job(dp, tp, true, absl::StrCat("checkpoint { resume: \"", step2, "\" }\n"), pp),
                  data, world);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->step(), 2);
    const std::vector<float> losses = Steps(*t, kTotal - 2);
    ASSERT_EQ(losses.size(), static_cast<size_t>(kTotal - 2));
    for (int i = 0; i < kTotal - 2; ++i) {
      EXPECT_EQ(losses[i], ref_losses[2 + i])
          << "loss at step " << 3 + i << " after resuming an async save is not bitwise equal";
    }
    const std::vector<float> weights = Weights(*t);
    ASSERT_EQ(weights.size(), ref_weights.size());
    EXPECT_EQ(0, std::memcmp(weights.data(), ref_weights.data(), weights.size() * 4))
        << "final weights after resuming an async save are not bitwise equal";
  }

  // Resharding onto other layouts of this world and onto one rank.
  struct Layout {
    int dp, tp, pp;
    bool zero;
    bool self;
  };
  std::vector<Layout> layouts = {{1, 1, 1, false, true}};
  if (n == 8) {
    // A few of the many: each degree changes at least once.
    layouts.insert(layouts.end(), {{8, 1, 1, false, false},
                                   {4, 2, 1, true, false},
                                   {4, 1, 2, true, false},
                                   {1, 4, 2, false, false},
                                   {2, 2, 2, false, false}});
  } else {
    for (int p2 : {1, 2}) {
      for (int t2 : {1, 2, 4}) {
        if (n % (t2 * p2) != 0) continue;
        const int d2 = n / (t2 * p2);
        for (bool zero : {false, true}) {
          if (zero && d2 == 1) continue;
          if (t2 == tp && p2 == pp && zero) continue;  // the saving layout itself
          layouts.push_back({d2, t2, p2, zero, false});
        }
      }
    }
  }
  for (const Layout& l : layouts) {
    const std::string what = absl::StrCat("dp ", l.dp, " tp ", l.tp, " pp ", l.pp,
                                          l.zero ? " distributed" : " plain", " optimizer");
    if (l.self && world->rank() != 0) continue;
    World* on = l.self ? World::Self() : world;
    const std::string again =
        absl::StrCat(root, "/again_dp", l.dp, "_tp", l.tp, "_pp", l.pp, l.zero ? "_z" : "");
    auto t = Make(
        Job(l.dp, l.tp, l.zero,
            absl::StrCat("checkpoint { dir: \"", again, "\" resume: \"", saved, "\" }\n"), l.pp),
        data, on);
    ASSERT_NE(t, nullptr) << what;
    ASSERT_EQ(t->step(), kStop) << what;
    ASSERT_TRUE(t->SaveCheckpoint().ok()) << what;
    const std::vector<float> losses = Steps(*t, kTotal - kStop);
    ASSERT_EQ(losses.size(), static_cast<size_t>(kTotal - kStop));
    for (int i = 0; i < kTotal - kStop; ++i) {
      EXPECT_NEAR(losses[i], ref_losses[kStop + i], 1e-5 * std::fabs(ref_losses[kStop + i]))
          << what << ": loss at step " << kStop + i + 1;
    }
    if (on->rank() == 0) {
      ExpectSameState(saved, FirstStepDir(again), what);
      std::cout << what << ": reloaded state bitwise equal, losses within 1e-5" << std::endl;
    }
  }
  // model.init_from a step directory: its weights (only) on another layout, at step 0.
  if (world->rank() == 0) {
    const std::string again = root + "/init_from";
    auto t = Make(Job(1, 1, false, absl::StrCat("checkpoint { dir: \"", again, "\" }\n")), data,
                  World::Self(), {absl::StrCat("model.init_from=", saved)});
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->step(), 0);
    ASSERT_TRUE(t->SaveCheckpoint().ok());
    ExpectSameState(saved, FirstStepDir(again), "model.init_from", {WEIGHTS});
    auto fresh = CheckpointReader::Open(FirstStepDir(again));
    ASSERT_TRUE(fresh.ok());
    std::vector<float> m(32);
    ASSERT_TRUE((*fresh)->ReadBox("ln_f.weight", ADAM_M, TensorBox{{0}, {32}}, m.data()).ok());
    EXPECT_EQ(m, std::vector<float>(32, 0.0f)) << "init_from must not load the moments";
  }
  MPI_Barrier(MPI_COMM_WORLD);

  // A corrupt file that only the last rank reads (its moment shards): every rank refuses (none
  // waits for the others in the first step).
  {
    const std::string bad = root + "/bad_world";
    const std::string file = absl::StrFormat("rank_%05d.bin", n - 1);
    if (world->rank() == 0) {
      fs::copy(saved, bad, fs::copy_options::recursive);
      const auto size = fs::file_size(bad + "/" + file);
      std::fstream f(bad + "/" + file, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(size) - 3);
      f.put('\x7f');
    }
    MPI_Barrier(MPI_COMM_WORLD);
    auto job = testing::JobFromText(
        Job(dp, tp, true, absl::StrCat("checkpoint { resume: \"", bad, "\" }\n"), pp), data);
    ASSERT_TRUE(job.ok());
    auto t = Trainer::Create(*job, world);
    EXPECT_FALSE(t.ok()) << "rank " << world->rank() << " loaded a corrupt checkpoint";
    if (!t.ok()) {
      std::cout << "rank " << world->rank() << " refused: " << t.status().message() << std::endl;
      if (world->rank() == n - 1) {
        EXPECT_NE(std::string(t.status().message()).find(bad + "/" + file), std::string::npos)
            << t.status();
      }
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);

  // Bad input, on rank 0 alone.
  if (world->rank() == 0) {
    auto copy = [&](const std::string& name) {
      const std::string to = root + "/bad_" + name;
      fs::copy(saved, to, fs::copy_options::recursive);
      return to;
    };
    const std::string file = "rank_00001.bin";
    {
      const std::string d = copy("crc");
      std::fstream f(d + "/" + file, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(100);
      char c;
      f.read(&c, 1);
      f.seekp(100);
      c ^= 0x10;
      f.write(&c, 1);
      f.close();
      ExpectRefused(d, data, "", {d + "/" + file, "checksum mismatch"});
    }
    {
      const std::string d = copy("deleted");
      fs::remove(d + "/" + file);
      ExpectRefused(d, data, "", {d + "/" + file});
    }
    {
      const std::string d = copy("truncated");
      fs::resize_file(d + "/" + file, fs::file_size(d + "/" + file) - 10);
      ExpectRefused(d, data, "", {d + "/" + file, "truncated"});
    }
    ExpectRefused(saved, data, "layers: 3 heads: 4 hidden: 32", {saved, "another model"});
    ExpectRefused(saved, data, "layers: 2 heads: 4 hidden: 64", {saved, "another model"});
    {
      const std::string d = root + "/incomplete";
      fs::create_directories(d + "/" + StepDirName(9) + ".tmp");
      ExpectRefused(d, data, "", {d, "no complete checkpoint", StepDirName(9) + ".tmp"});
    }
    ExpectRefused(root + "/nowhere", data, "", {root + "/nowhere", "does not exist"});
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
