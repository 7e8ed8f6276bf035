// "Layout does not change the math", for data parallelism: two ranks that split the global
// batch (dp = 2, each its own micro-batches, gradients averaged by MPI all-reduce) give the same
// losses, step after step, as one rank taking the whole batch (dp = 1, twice the gradient
// accumulation), to 1e-5 relative; and the ranks agree bit for bit on the weights.
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "launcher/trainer.h"
#include "data/tokenizer.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "tests/launcher/job_testing.h"

namespace loom {
namespace {

constexpr char kJob[] = R"(
model { family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 8 }
optimizer { lr: 0.01 weight_decay: 0.1 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 decay_style: COSINE min_lr: 0.001 total_steps: 6 }
data { train: "$DIR/train_*.bin" seq_len: 32 }
logging { interval: 1 }
runtime { backend: CPU seed: 7 }
)";

std::vector<float> Losses(Trainer& t, int steps) {
  std::vector<float> out;
  for (int i = 0; i < steps; ++i) {
    auto l = t.Step();
    EXPECT_TRUE(l.ok()) << l.status();
    if (!l.ok()) break;
    out.push_back(*l);
  }
  return out;
}

TEST(DataParallelTrainTest, TwoRanksMatchOneRankStepByStep) {
  auto world = World::Get();
  ASSERT_TRUE(world.ok()) << world.status();
  ASSERT_EQ((*world)->size(), 2) << "run under mpirun -np 2";
  const int rank = (*world)->rank();
  // Each rank writes the same shard into its own directory (no shared-file races).
  const std::string dir = testing::FreshTempDir(absl::StrCat("dp_rank", rank));
  ByteTokenizer tok;
  std::vector<uint16_t> ids;
  for (int i = 0; i < 60; ++i) {
    tok.Encode(absl::StrCat("line ", i, ": pack my box with five dozen liquor jugs. "), &ids);
  }
  ASSERT_TRUE(WriteShard(dir + "/train_000.bin", ids, ShardFormat::kLlmc).ok());

  constexpr int kSteps = 6;
  auto job = testing::JobFromText(kJob, dir);
  ASSERT_TRUE(job.ok()) << job.status();
  auto dp2 = Trainer::Create(*job, *world);
  ASSERT_TRUE(dp2.ok()) << dp2.status();
  EXPECT_EQ((*dp2)->numbers().dp, 2);
  EXPECT_EQ((*dp2)->numbers().grad_accum_steps, 2);
  const std::vector<float> losses = Losses(**dp2, kSteps);
  ASSERT_EQ(losses.size(), static_cast<size_t>(kSteps));

  // Both ranks hold the same weights after the all-reduced updates.
  auto params = (*dp2)->model().params().ToFloatVector();
  ASSERT_TRUE(params.ok());
  std::vector<float> other(params->size());
  MPI_Sendrecv(params->data(), static_cast<int>(params->size()), MPI_FLOAT, 1 - rank, 0,
               other.data(), static_cast<int>(other.size()), MPI_FLOAT, 1 - rank, 0,
               MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  EXPECT_EQ(std::memcmp(params->data(), other.data(), params->size() * sizeof(float)), 0);

  if (rank == 0) {
    // The same job on one rank: the whole global batch through gradient accumulation.
    auto dp1 = Trainer::Create(*job, World::Self());
    ASSERT_TRUE(dp1.ok()) << dp1.status();
    EXPECT_EQ((*dp1)->numbers().dp, 1);
    EXPECT_EQ((*dp1)->numbers().grad_accum_steps, 4);
    const std::vector<float> ref = Losses(**dp1, kSteps);
    ASSERT_EQ(ref.size(), losses.size());
    for (int i = 0; i < kSteps; ++i) {
      EXPECT_NEAR(losses[i], ref[i], 1e-5 * std::fabs(ref[i])) << "step " << i + 1;
    }
    EXPECT_LT(losses.back(), losses.front());
  }
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Only rank 0 prints gtest's report; every rank still runs and fails on its own.
  auto world = loom::World::Get();
  if (world.ok() && (*world)->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  if (world.ok()) {
    int worst = rc;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    rc = worst;
  }
  return rc;
}
