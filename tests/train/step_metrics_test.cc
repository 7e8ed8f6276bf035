// The trainer's progress counters (train/step_metrics.h): throughput and MFU over the logging
// interval, communication shares, and a fresh interval after each report.
#include "train/step_metrics.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(StepProgressTest, ThroughputMfuAndCommunicationOverTheInterval) {
  StepProgress p(/*tokens_per_step=*/1000, /*flops_per_token=*/6.0, /*peak_flops=*/12000.0,
                 /*parallel=*/true, /*show_comm_share=*/true);
  CommSeconds c;
  c.tp = 0.1;
  c.dp_exposed = 0.1;
  c.pp = 0.2;
  p.AddStep(1.0, c);
  p.AddStep(1.0, c);
  CommSeconds wait;
  wait.dp_exposed = 0.2;
  p.AddComm(wait);
  StepProgress::Report r = p.Flush(2, 10, 3.5, 1e-3, 0.5, 1 << 20, 0, std::nullopt);
  EXPECT_DOUBLE_EQ(r.metrics.tokens_per_s, 1000.0);  // 2000 tokens in 2 s
  ASSERT_TRUE(r.metrics.mfu.has_value());
  EXPECT_DOUBLE_EQ(*r.metrics.mfu, 0.5);  // 1000 tok/s * 6 / 12000
  ASSERT_TRUE(r.metrics.comm_share.has_value());
  EXPECT_DOUBLE_EQ(*r.metrics.comm_share, 0.3);  // (0.2 tp + 0.4 dp) / 2 s; pipeline apart
  ASSERT_EQ(r.lines.size(), 2u);
  EXPECT_TRUE(absl::StrContains(r.lines[1], "pipeline 200.0 ms")) << r.lines[1];
  EXPECT_DOUBLE_EQ(p.mean_step_s(), 1.0);
  // The next interval starts empty; the run's clock does not.
  p.AddStep(4.0, CommSeconds{});
  r = p.Flush(3, 10, 3.4, 1e-3, 0.5, 0, 0, 3.0f);
  EXPECT_DOUBLE_EQ(r.metrics.tokens_per_s, 250.0);
  EXPECT_DOUBLE_EQ(*r.metrics.comm_share, 0.0);
  EXPECT_DOUBLE_EQ(p.elapsed_s(), 6.0);
  EXPECT_EQ(p.steps_timed(), 3);
  ASSERT_TRUE(r.metrics.val_loss.has_value());
}

// On a device (collectives on streams) comm_share comes from the device's times, not from the
// host's, which read ~0 there: tensor-parallel collectives whole, the data-parallel reduction by
// the part the ops' stream waited for, the pipeline's exchanges not at all.
TEST(StepProgressTest, OnADeviceCommShareComesFromTheStreamTimes) {
  StepProgress p(1000, 6.0, 0.0, /*parallel=*/true, /*show_comm_share=*/true);
  CommSeconds host;  // what the host saw: next to nothing
  host.tp = 1e-6;
  host.dp_exposed = 1e-6;
  for (int i = 0; i < 2; ++i) {
    p.AddStep(1.0, host);
    p.AddDeviceComm({{"tp", 0.2}, {"dp", 0.5}, {"pp", 0.3}, {"embedding", 0.1}}, 0.05);
  }
  StepProgress::Report r = p.Flush(2, 10, 3.5, 1e-3, 0.5, 0, 0, std::nullopt);
  ASSERT_TRUE(r.metrics.comm_share.has_value());
  EXPECT_DOUBLE_EQ(*r.metrics.comm_share, 0.25);  // (2 x 0.2 tp + 2 x 0.05 dp exposed) / 2 s
  EXPECT_DOUBLE_EQ(r.device_seconds["dp"], 1.0);
  EXPECT_DOUBLE_EQ(r.device_seconds["dp exposed"], 0.1);
  // The next interval starts empty; streams of two groups overlapping cap the share at 1.
  p.AddStep(0.1, CommSeconds{});
  p.AddDeviceComm({{"tp", 0.2}}, 0.05);
  r = p.Flush(3, 10, 3.4, 1e-3, 0.5, 0, 0, std::nullopt);
  EXPECT_DOUBLE_EQ(*r.metrics.comm_share, 1.0);
  EXPECT_DOUBLE_EQ(r.device_seconds["tp"], 0.2);
}

// A peak measured while the machine was busy can be below what a step achieves: MFU is then
// counted against the achieved rate (100%, said in a line) from then on, never above 100%.
TEST(StepProgressTest, AStepFasterThanThePeakRaisesItAndSaysSo) {
  StepProgress p(1000, 6.0, /*peak_flops=*/3000.0, false, false);
  p.AddStep(1.0, CommSeconds{});  // 6000 FLOP/s: twice the peak
  StepProgress::Report r = p.Flush(1, 10, 3.5, 1e-3, 0.5, 0, 0, std::nullopt);
  ASSERT_TRUE(r.metrics.mfu.has_value());
  EXPECT_DOUBLE_EQ(*r.metrics.mfu, 1.0);
  EXPECT_DOUBLE_EQ(r.raised_peak_flops, 6000.0);
  ASSERT_EQ(r.lines.size(), 2u);
  EXPECT_TRUE(absl::StrContains(r.lines[1], "above the GEMM peak")) << r.lines[1];
  EXPECT_TRUE(absl::StrContains(r.lines[0], "mfu 100.0%")) << r.lines[0];
  // The next interval is counted against the raised peak, without a second note.
  p.AddStep(2.0, CommSeconds{});
  r = p.Flush(2, 10, 3.4, 1e-3, 0.5, 0, 0, std::nullopt);
  EXPECT_DOUBLE_EQ(*r.metrics.mfu, 0.5);
  EXPECT_EQ(r.raised_peak_flops, 0.0);
  EXPECT_EQ(r.lines.size(), 1u);
}

TEST(StepProgressTest, OneRankHasNoCommunicationLineAndNoMfuWithoutAPeak) {
  StepProgress p(100, 6.0, 0.0, false, false);
  p.AddStep(0.5, CommSeconds{});
  StepProgress::Report r = p.Flush(1, 1, 2.0, 1e-3, 0.1, 0, 0, std::nullopt);
  EXPECT_EQ(r.lines.size(), 1u);
  EXPECT_FALSE(r.metrics.mfu.has_value());
  EXPECT_FALSE(r.metrics.comm_share.has_value());
}

}  // namespace
}  // namespace loom
