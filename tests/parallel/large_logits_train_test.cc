// The model's vocab-parallel cross-entropy with large logits, at tp = the world size (ctest
// runs it at 2, 3 and 4 ranks): weights are set so that the logits have magnitude 50-100 (either
// sign), or so that one logit (about 100) dominates the rest (at most about 5), and the loss and
// gradient norm of a step at tp must match the 1-rank run of the same weights to 1e-5. The tensor
// group must agree on the true row maximum: softmax is shift-invariant, so combining the ranks'
// maxima any other way (a sum, say) changes nothing mathematically but underflows exp() once
// logits reach tens. The other tests keep their logits small and would not see it.
//
// How the logits are made large: GPT-2 with ln_f.weight = 1 and ln_f.bias = 1, and each real
// row v of the tied embedding u_v + 0.05 * noise. The final LayerNorm's output n has zero mean
// over its C channels, so logit_v = sum_c (n_c + 1) * w_vc ~= C * u_v: C = 48 and |u_v| in
// [1.04, 2.08] give logits of magnitude 50-100.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr int kHidden = 48;

// heads 12 divide among 2, 3 and 4 tensor ranks.
std::string Job(int tp, const std::string& extra) {
  return absl::StrCat(
      "model { family: GPT2 layers: 1 heads: 12 hidden: 48 vocab: 257 max_seq: 16 "
      "vocab_pad_multiple: 8 }\n",
      "parallel { micro_batch_size: 2 global_batch_size: 4 tp: ", tp, " }\n",
      R"(optimizer { lr: 0.001 grad_clip: 0 }
lr_schedule { warmup_steps: 0 decay_style: CONSTANT total_steps: 4 }
data { train: "$DIR/train_*.bin" seq_len: 16 }
logging { interval: 100 }
runtime { backend: CPU seed: 9 }
)",
      extra);
}

// A simple deterministic generator in [0, 1) (the test needs no statistics).
double Uniform(uint64_t* state) {
  *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<double>(*state >> 11) / 9007199254740992.0;
}

// Sets the 1-rank model's head so that its logits are large (see the top of the file).
void MakeLogitsLarge(Trainer& t, bool dominant) {
  const ParamTable& table = t.model().layout();
  float* p = t.model().params().data_as<float>();
  const ParamSpec& wte = **table.Find("wte.weight");
  const ParamSpec& lnw = **table.Find("ln_f.weight");
  const ParamSpec& lnb = **table.Find("ln_f.bias");
  for (int c = 0; c < kHidden; ++c) {
    p[lnw.offset + c] = 1.0f;
    p[lnb.offset + c] = 1.0f;
  }
  uint64_t state = dominant ? 1 : 2;
  for (int64_t v = 0; v < 257; ++v) {
    double u;
    if (dominant) {
      u = (v == 101 || v == 222) ? 2.08 : 0.1 * Uniform(&state);
    } else {
      const double mag = 1.04 + 1.04 * Uniform(&state);
      u = Uniform(&state) < 0.5 ? -mag : mag;
    }
    for (int c = 0; c < kHidden; ++c) {
      p[wte.offset + v * kHidden + c] = static_cast<float>(u + 0.05 * (Uniform(&state) - 0.5));
    }
  }
}

TEST(LargeLogitsTrainTest, TensorParallelLossMatchesOneRank) {
  auto w = World::Get();
  ASSERT_TRUE(w.ok());
  World* world = *w;
  world->state()->timeout = absl::Seconds(60);
  const int tp = world->size();
  if (tp < 2) GTEST_SKIP() << "needs 2 or more ranks";
  std::string root;
  if (world->rank() == 0) root = testing::FreshTempDir(absl::StrCat("large_logits_tp", tp));
  int len = static_cast<int>(root.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  root.resize(len);
  MPI_Bcast(root.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  for (bool dominant : {false, true}) {
    const std::string what = absl::StrCat(
        "tp ", tp, ", ", dominant ? "one dominant logit" : "logits of magnitude 50-100");
    const std::string ck = absl::StrCat(root, dominant ? "/dominant" : "/large");
    // Rank 0: the 1-rank run of the weights, which it saves (step 0) for the tp run to load.
    double ref[3] = {0, 0, 0};  // loss, gradient norm, the largest logit seen
    if (world->rank() == 0) {
      if (!dominant) {
        ByteTokenizer tok;
        std::vector<uint16_t> ids;
        for (int i = 0; i < 20; ++i) tok.Encode("large logits test: the quick brown fox. ", &ids);
        ASSERT_TRUE(WriteShard(root + "/train_000.bin", ids, ShardFormat::kLlmc).ok());
      }
      auto job = testing::JobFromText(
          Job(1, absl::StrCat("checkpoint { dir: \"", ck, "\" resume: \"NONE\" }\n")), root);
      ASSERT_TRUE(job.ok()) << job.status();
      auto t = Trainer::Create(*job, World::Self());
      ASSERT_TRUE(t.ok()) << t.status();
      MakeLogitsLarge(**t, dominant);
      ASSERT_TRUE((*t)->SaveCheckpoint().ok());
      ASSERT_TRUE((*t)->FinishCheckpoint().ok());
      // The logits of one sequence, to show the test reaches the range it claims.
      std::vector<int32_t> prompt(16);
      for (int i = 0; i < 16; ++i) prompt[i] = 't' + i % 5;
      Tensor in = Tensor::View(prompt.data(), Shape{1, 16}, DType::kI32, CpuDevice());
      auto logits = (*t)->model().Forward(in);
      ASSERT_TRUE(logits.ok()) << logits.status();
      auto values = logits->ToFloatVector();
      ASSERT_TRUE(values.ok());
      const int64_t vp = logits->dim(logits->rank() - 1);
      double smallest = 1e30;
      for (int64_t i = 0; i < static_cast<int64_t>(values->size()); ++i) {
        if (i % vp >= 257) continue;
        ref[2] = std::max(ref[2], static_cast<double>((*values)[i]));
        smallest = std::min(smallest, std::fabs(static_cast<double>((*values)[i])));
      }
      if (!dominant) EXPECT_GE(smallest, 40.0) << "logits smaller than the test means";
      auto loss = (*t)->Step();
      ASSERT_TRUE(loss.ok()) << loss.status();
      ref[0] = *loss;
      ref[1] = (*t)->last_grad_norm();
      std::cout << what << ": 1-rank loss " << ref[0] << ", gradient norm " << ref[1]
                << ", largest logit " << ref[2] << std::endl;
    }
    MPI_Bcast(ref, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    ASSERT_GE(ref[2], 90.0) << "the largest logit should be about 100";
    ASSERT_TRUE(std::isfinite(ref[0]) && ref[0] > 1.0) << "1-rank loss " << ref[0];
    auto job = testing::JobFromText(
        Job(tp, absl::StrCat("checkpoint { resume: \"", ck, "/", StepDirName(0), "\" }\n")), root);
    ASSERT_TRUE(job.ok()) << job.status();
    auto t = Trainer::Create(*job, world);
    ASSERT_TRUE(t.ok()) << t.status();
    auto loss = (*t)->Step();
    ASSERT_TRUE(loss.ok()) << loss.status();
    EXPECT_NEAR(*loss, ref[0], 1e-5 * ref[0]) << what << ": loss against 1 rank";
    EXPECT_NEAR((*t)->last_grad_norm(), ref[1], 1e-5 * ref[1])
        << what << ": gradient norm against 1 rank";
    if (world->rank() == 0) {
      std::cout << what << ": loss " << *loss << ", gradient norm " << (*t)->last_grad_norm()
                << std::endl;
    }
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
