// The trainer on the test device (runtime.backend TEST, runtime/test_device.h), in one process:
// the losses of the plain CPU run bit for bit, with gradient accumulation (4 micro-batches per
// step), and the host waits on the device per step within Trainer::kHostSyncsPerStep. A trainer
// that read each micro-batch's loss back, or copied its tokens from pageable memory, waits 4 to
// 12 times a step here and fails. (The layouts run under mpirun in gpu_path_test.sh.)
#include <string>
#include <vector>

#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "tests/train/job_testing.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr char kJob[] = R"(
model { family: GPT2 layers: 2 heads: 2 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 8 }
optimizer { lr: 0.01 weight_decay: 0.0 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 decay_style: COSINE min_lr: 0.001 total_steps: 10 }
data { train: "$DIR/data/train_*.bin" seq_len: 32 }
logging { interval: 1 tensorboard: false }
runtime { seed: 1337 }
)";

class TrainerOnTestDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    ASSERT_TRUE(MakeDirs(dir_ + "/data").ok());
    ByteTokenizer tok;
    std::vector<uint16_t> ids;
    for (int i = 0; i < 100; ++i) tok.Encode("the quick brown fox jumps over the lazy dog. ", &ids);
    ASSERT_TRUE(WriteShard(dir_ + "/data/train_000.bin", ids, ShardFormat::kLlmc).ok());
  }

  struct Run {
    std::vector<float> losses;
    std::vector<double> norms;
    std::vector<int64_t> syncs;  // host waits per step
    std::string device;
  };

  Run Steps(const std::string& backend, int n) {
    Run out;
    auto job = testing::JobFromText(kJob, dir_, {"runtime.backend=" + backend});
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return out;
    auto world = World::Get();
    EXPECT_TRUE(world.ok());
    auto t = Trainer::Create(*job, *world);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return out;
    Device* d = (*t)->device();
    out.device = d->Name();
    for (int i = 0; i < n; ++i) {
      const int64_t before = d->host_syncs();
      auto l = (*t)->Step();
      EXPECT_TRUE(l.ok()) << l.status();
      if (!l.ok()) break;
      out.syncs.push_back(d->host_syncs() - before);
      out.losses.push_back(*l);
      out.norms.push_back((*t)->last_grad_norm());
    }
    return out;
  }

  testing::ScopedTempDir tmp_{"trainer_gpu_path"};
  std::string dir_;
};

TEST_F(TrainerOnTestDevice, TrainsTheCpuLossesBitForBitWithinTheHostSyncBudget) {
  const Run cpu = Steps("CPU", 3);
  const Run dev = Steps("TEST", 3);
  ASSERT_EQ(cpu.losses.size(), 3u);
  ASSERT_EQ(dev.losses.size(), 3u);
  EXPECT_EQ(dev.device.rfind("test:", 0), 0u) << dev.device;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(dev.losses[i], cpu.losses[i]) << "step " << i + 1;
    EXPECT_EQ(dev.norms[i], cpu.norms[i]) << "step " << i + 1;
    EXPECT_LE(dev.syncs[i], Trainer::kHostSyncsPerStep)
        << "step " << i + 1 << " made the host wait for the device " << dev.syncs[i]
        << " times (budget " << Trainer::kHostSyncsPerStep << ")";
  }
}

// A checkpoint taken while the next step's batches are prefetched (the loader one step ahead)
// saves the position of the batches used: the resumed run trains the uninterrupted run's steps
// 3 and 4 bit for bit. Saving the loader's own position would skip a step's batches.
TEST_F(TrainerOnTestDevice, ACheckpointTakenWhileABatchIsPrefetchedResumesAtTheRightPosition) {
  const Run straight = Steps("TEST", 4);
  ASSERT_EQ(straight.losses.size(), 4u);
  const std::string ckpt = "checkpoint.dir=" + dir_ + "/ckpt";
  auto world = World::Get();
  ASSERT_TRUE(world.ok());
  {
    auto job = testing::JobFromText(kJob, dir_, {"runtime.backend=TEST", ckpt});
    ASSERT_TRUE(job.ok()) << job.status();
    auto t = Trainer::Create(*job, *world);
    ASSERT_TRUE(t.ok()) << t.status();
    DataLoaderState after_one_step;
    for (int i = 0; i < 2; ++i) {
      auto l = (*t)->Step();
      ASSERT_TRUE(l.ok()) << l.status();
      EXPECT_EQ(*l, straight.losses[i]) << "step " << i + 1;
      if (i == 0) after_one_step = (*t)->data_position();
    }
    // Step 3's batches are prefetched: the loader stands a step beyond the position saved.
    const int64_t per_step = after_one_step.index;  // samples a step uses (one epoch here)
    ASSERT_GT(per_step, 0);
    EXPECT_EQ((*t)->data_position().index, 2 * per_step);
    EXPECT_EQ((*t)->train_data().GetState().index, 3 * per_step)
        << "no batches were prefetched, so this test would prove nothing";
    ASSERT_TRUE((*t)->SaveCheckpoint().ok());
    ASSERT_TRUE((*t)->FinishCheckpoint().ok());
  }
  auto job = testing::JobFromText(kJob, dir_, {"runtime.backend=TEST", ckpt});
  ASSERT_TRUE(job.ok()) << job.status();
  auto t = Trainer::Create(*job, *world);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ((*t)->step(), 2);
  for (int i = 2; i < 4; ++i) {
    auto l = (*t)->Step();
    ASSERT_TRUE(l.ok()) << l.status();
    EXPECT_EQ(*l, straight.losses[i]) << "step " << i + 1 << " after the resume";
  }
}

}  // namespace
}  // namespace loom
