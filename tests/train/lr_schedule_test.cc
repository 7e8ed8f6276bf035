// The learning-rate schedule (train/lr_schedule.h) against values worked out by hand, for
// lr = 0.6, min_lr = 0.1, 4 warmup steps, 12 total steps (steps are 0-based: LearningRate(0) is
// the rate of the first optimizer step):
//   warmup      step s < 4: 0.6 * (s + 1) / 4          -> 0.15, 0.30, 0.45, 0.60
//   decay       progress p = (s - 4) / 8, clamped to [0, 1]
//     cosine    0.1 + 0.25 * (1 + cos(pi p))           -> s=4: 0.6, s=8: 0.35,
//                                                         s=11: 0.1 + 0.25 * (1 - 0.92387953)
//     linear    0.6 - 0.5 p                            -> s=6: 0.475, s=8: 0.35, s=11: 0.1625
//     constant  0.6
//   s >= 12     min_lr (cosine, linear); lr (constant)
#include "train/lr_schedule.h"

#include "gtest/gtest.h"
#include "proto/job.pb.h"

namespace loom {
namespace {

constexpr double kTol = 1e-12;

JobConfig Schedule(LrScheduleConfig::DecayStyle style, int warmup = 4, double min_lr = 0.1) {
  JobConfig c;
  c.mutable_optimizer()->set_lr(0.6);
  LrScheduleConfig* s = c.mutable_lr_schedule();
  s->set_warmup_steps(warmup);
  s->set_total_steps(12);
  s->set_min_lr(min_lr);
  s->set_decay_style(style);
  return c;
}

TEST(LrScheduleTest, WarmupRisesLinearlyFromLrOverWarmupToLr) {
  for (auto style : {LrScheduleConfig::COSINE, LrScheduleConfig::LINEAR,
                     LrScheduleConfig::CONSTANT}) {
    const JobConfig c = Schedule(style);
    // The first step already trains (lr / warmup, not 0).
    EXPECT_NEAR(LearningRate(c, 0), 0.15, kTol) << style;
    EXPECT_NEAR(LearningRate(c, 1), 0.30, kTol) << style;
    EXPECT_NEAR(LearningRate(c, 2), 0.45, kTol) << style;
    EXPECT_NEAR(LearningRate(c, 3), 0.60, kTol) << style;  // warmup's last step: the full rate
    EXPECT_NEAR(LearningRate(c, 4), 0.60, kTol) << style;  // decay starts from lr
  }
}

TEST(LrScheduleTest, CosineHalfWayIsTheMeanOfLrAndMinLr) {
  const JobConfig c = Schedule(LrScheduleConfig::COSINE);
  EXPECT_NEAR(LearningRate(c, 6), 0.1 + 0.25 * (1 + 0.70710678118654752), kTol);
  EXPECT_NEAR(LearningRate(c, 8), 0.35, kTol);
  // The last step (11 of 0..11) is one eighth of the way short of min_lr.
  EXPECT_NEAR(LearningRate(c, 11), 0.1 + 0.25 * (1 - 0.92387953251128676), kTol);
  // At total_steps and beyond: min_lr.
  EXPECT_NEAR(LearningRate(c, 12), 0.1, kTol);
  EXPECT_NEAR(LearningRate(c, 13), 0.1, kTol);
  EXPECT_NEAR(LearningRate(c, 1000), 0.1, kTol);
}

TEST(LrScheduleTest, LinearDecaysInAStraightLine) {
  const JobConfig c = Schedule(LrScheduleConfig::LINEAR);
  EXPECT_NEAR(LearningRate(c, 6), 0.475, kTol);
  EXPECT_NEAR(LearningRate(c, 8), 0.35, kTol);
  EXPECT_NEAR(LearningRate(c, 11), 0.1625, kTol);
  EXPECT_NEAR(LearningRate(c, 12), 0.1, kTol);
  EXPECT_NEAR(LearningRate(c, 50), 0.1, kTol);
}

TEST(LrScheduleTest, ConstantStaysAtLrAfterWarmup) {
  const JobConfig c = Schedule(LrScheduleConfig::CONSTANT);
  for (int s : {4, 8, 11, 12, 100}) EXPECT_NEAR(LearningRate(c, s), 0.6, kTol) << "step " << s;
}

TEST(LrScheduleTest, MinLrIsTheFloor) {
  // min_lr 0: cosine and linear end at 0; the midpoint is half of lr.
  const JobConfig cos0 = Schedule(LrScheduleConfig::COSINE, 4, 0.0);
  EXPECT_NEAR(LearningRate(cos0, 8), 0.3, kTol);
  EXPECT_NEAR(LearningRate(cos0, 12), 0.0, kTol);
  const JobConfig lin0 = Schedule(LrScheduleConfig::LINEAR, 4, 0.0);
  EXPECT_NEAR(LearningRate(lin0, 8), 0.3, kTol);
  EXPECT_NEAR(LearningRate(lin0, 11), 0.075, kTol);
  // min_lr = lr: flat after warmup.
  const JobConfig flat = Schedule(LrScheduleConfig::COSINE, 4, 0.6);
  for (int s : {4, 8, 11, 20}) EXPECT_NEAR(LearningRate(flat, s), 0.6, kTol) << "step " << s;
}

TEST(LrScheduleTest, NoWarmupStartsAtLr) {
  const JobConfig c = Schedule(LrScheduleConfig::COSINE, 0);
  EXPECT_NEAR(LearningRate(c, 0), 0.6, kTol);
  // progress = s / 12: s = 6 is the midpoint.
  EXPECT_NEAR(LearningRate(c, 6), 0.35, kTol);
  EXPECT_NEAR(LearningRate(c, 12), 0.1, kTol);
}

}  // namespace
}  // namespace loom
