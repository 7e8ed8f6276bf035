// The zero-bubble schedule (ZB-H1) as data, on the simulator: for every p up to 6 (and 8) and
// m up to 9 (and 32) it finishes under both message models, with and without latency; each
// micro-batch runs F, B and W once and in that order; every send has its receive in the order
// sent; a stage holds at most min(p, m) micro-batches (1F1B's peak, its stage 0's), never more
// than 1F1B's worst stage; the bubble is below 1F1B's for p >= 2, and with t_F = t_B = t_W and
// m >= p it is the paper's (p - 1) t_B idle per stage, exactly a third of 1F1B's. A schedule
// that drops one W, or runs a W before its B, is refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_simulator.h"

namespace loom {
namespace {

constexpr PipelineScheduleKind kZb = PipelineScheduleKind::kZeroBubble;

std::vector<PipelineShape> Shapes() {
  std::vector<PipelineShape> out;
  for (int p = 1; p <= 6; ++p) {
    for (int m = 1; m <= 9; ++m) out.push_back({p, m, 1});
  }
  out.push_back({8, 32, 1});
  out.push_back({8, 8, 1});
  return out;
}

std::string Name(const PipelineShape& s) {
  return absl::StrCat("zero_bubble p", s.stages, " m", s.micro_batches);
}

PipelineSchedule Build(PipelineScheduleKind kind, const PipelineShape& shape) {
  auto s = BuildPipelineSchedule(kind, shape);
  EXPECT_TRUE(s.ok()) << Name(shape) << ": " << s.status();
  return s.ok() ? *s : PipelineSchedule(shape.stages);
}

TEST(ZeroBubbleScheduleTest, FinishesWithoutDeadlockAndDoesAllTheWork) {
  for (const PipelineShape& sh : Shapes()) {
    const PipelineSchedule schedule = Build(kZb, sh);
    for (SendMode mode : {SendMode::kRendezvous, SendMode::kEager}) {
      for (double latency : {0.0, 0.25}) {
        PipelineCosts costs;
        costs.send_mode = mode;
        costs.latency = latency;
        auto sim = SimulatePipeline(schedule, sh, costs);
        ASSERT_TRUE(sim.ok()) << Name(sh) << " latency " << latency << ": " << sim.status();
        for (const StageReport& r : sim->stages) {
          EXPECT_DOUBLE_EQ(r.busy, 3.0 * sh.micro_batches) << Name(sh);
        }
      }
    }
  }
}

TEST(ZeroBubbleScheduleTest, EachMicroBatchRunsFThenBThenWOnce) {
  for (const PipelineShape& sh : Shapes()) {
    const PipelineSchedule schedule = Build(kZb, sh);
    for (int s = 0; s < sh.stages; ++s) {
      std::map<std::pair<ActionKind, int>, int> at;
      int i = 0;
      for (const Action& a : schedule[s]) {
        ++i;
        if (a.kind == ActionKind::kExchange) continue;
        EXPECT_EQ(a.chunk, 0);
        EXPECT_TRUE(at.emplace(std::make_pair(a.kind, a.micro_batch), i).second)
            << Name(sh) << " stage " << s << " repeats " << ActionName(a, sh);
      }
      for (int mb = 0; mb < sh.micro_batches; ++mb) {
        const auto f = at.find({ActionKind::kForward, mb}),
                   b = at.find({ActionKind::kBackward, mb}), w = at.find({ActionKind::kWeight, mb});
        ASSERT_TRUE(f != at.end() && b != at.end() && w != at.end()) << Name(sh) << " mb " << mb;
        EXPECT_LT(f->second, b->second) << Name(sh);
        EXPECT_LT(b->second, w->second) << Name(sh);
      }
    }
  }
}

TEST(ZeroBubbleScheduleTest, MessagesMatchAndArriveInTheOrderSent) {
  for (const PipelineShape& sh : Shapes()) {
    const PipelineSchedule schedule = Build(kZb, sh);
    std::map<std::pair<int, int>, std::vector<std::tuple<bool, int, int>>> sent, received;
    for (int s = 0; s < sh.stages; ++s) {
      for (const Action& a : schedule[s]) {
        if (a.kind == ActionKind::kWeight) {
          EXPECT_TRUE(a.transfers.empty());
        }
        for (const Transfer& t : a.transfers) {
          auto& seq = IsSend(t.kind) ? sent[{s, t.peer}] : received[{t.peer, s}];
          seq.push_back({IsGrad(t.kind), t.micro_batch, t.boundary});
        }
      }
    }
    EXPECT_EQ(sent, received) << Name(sh);
  }
}

TEST(ZeroBubbleScheduleTest, HoldsNoMoreMicroBatchesThan1F1BsPeak) {
  for (const PipelineShape& sh : Shapes()) {
    auto zb = SchedulePipelineBubble(kZb, sh);
    auto one = SchedulePipelineBubble(PipelineScheduleKind::kOneFOneB, sh);
    ASSERT_TRUE(zb.ok() && one.ok()) << Name(sh);
    const int peak_1f1b = *std::max_element(one->in_flight.begin(), one->in_flight.end());
    EXPECT_EQ(peak_1f1b, std::min(sh.stages, sh.micro_batches)) << Name(sh);
    for (size_t s = 0; s < zb->in_flight.size(); ++s) {
      EXPECT_LE(zb->in_flight[s], peak_1f1b) << Name(sh) << " stage " << s;
    }
    // Stage 0 holds exactly what it holds under 1F1B.
    EXPECT_EQ(zb->in_flight[0], one->in_flight[0]) << Name(sh);
  }
}

TEST(ZeroBubbleScheduleTest, BubbleIsBelow1F1BsAndAThirdOfItWhenBAndWTakeAsLong) {
  for (const PipelineShape& sh : Shapes()) {
    const int p = sh.stages, m = sh.micro_batches;
    if (p < 2) continue;
    const PipelineSimulation one =
        *SimulatePipeline(Build(PipelineScheduleKind::kOneFOneB, sh), sh, PipelineCosts{});
    const PipelineSchedule zb_schedule = Build(kZb, sh);
    const PipelineSimulation zb = *SimulatePipeline(zb_schedule, sh, PipelineCosts{});
    EXPECT_LT(zb.bubble_fraction, one.bubble_fraction) << Name(sh);
    if (m >= p) {
      // t_F = t_B = t_W = 1: makespan 3m + p - 1, idle p - 1 per stage (1F1B: 3 (p - 1)).
      EXPECT_NEAR(zb.makespan, 3.0 * m + p - 1, 1e-9) << Name(sh);
      for (const StageReport& r : zb.stages) EXPECT_NEAR(r.idle, p - 1.0, 1e-9) << Name(sh);
      EXPECT_NEAR(one.stages[0].idle, 3.0 * (p - 1), 1e-9);
    }
    // Other splits of the backward (W a quarter or three quarters of it) still beat 1F1B.
    for (double share : {0.25, 0.75}) {
      PipelineCosts costs;
      costs.weight_share = share;
      EXPECT_LT(SimulatePipeline(zb_schedule, sh, costs)->bubble_fraction, one.bubble_fraction)
          << Name(sh) << " weight share " << share;
    }
  }
}

TEST(ZeroBubbleScheduleTest, TimelineOfTwoStages) {
  const PipelineShape sh{2, 3, 1};
  const PipelineSchedule schedule = Build(kZb, sh);
  EXPECT_EQ(FormatSchedule(schedule, sh, false),
            "stage 0: F0 F1 B0 W0 F2 B1 W1 B2 W2\n"
            "stage 1: F0 B0 F1 B1 W0 F2 B2 W1 W2\n");
  // W's sit before the exchange that pairs the last B's send with the next forward's receive,
  // and after the last sends once no forward follows.
  EXPECT_EQ(FormatSchedule(schedule, sh, true),
            "stage 0: F0 X[send a0 to s1] F1 X[send a1 to s1, recv g0 from s1] B0 W0 F2 "
            "X[send a2 to s1, recv g1 from s1] B1 W1 X[recv g2 from s1] B2 W2\n"
            "stage 1: X[recv a0 from s0] F0 B0 X[send g0 to s0, recv a1 from s0] F1 B1 W0 "
            "X[send g1 to s0, recv a2 from s0] F2 B2 X[send g2 to s0] W1 W2\n");
}

TEST(ZeroBubbleScheduleTest, RefusesVirtualStagesAndDroppedOrEarlyWeightPasses) {
  auto v2 = BuildPipelineSchedule(kZb, {2, 4, 2});
  ASSERT_FALSE(v2.ok());
  EXPECT_TRUE(absl::StrContains(v2.status().message(), "ZB-V")) << v2.status();

  const PipelineShape sh{3, 4, 1};
  PipelineSchedule dropped = Build(kZb, sh);
  for (auto it = dropped[1].begin(); it != dropped[1].end(); ++it) {
    if (it->kind == ActionKind::kWeight && it->micro_batch == 2) {
      dropped[1].erase(it);
      break;
    }
  }
  auto sim = SimulatePipeline(dropped, sh, PipelineCosts{});
  ASSERT_FALSE(sim.ok());
  EXPECT_TRUE(absl::StrContains(sim.status().message(), "never runs the weight-gradient"))
      << sim.status();
  EXPECT_TRUE(absl::StrContains(sim.status().message(), "stage 1")) << sim.status();

  PipelineSchedule early = Build(kZb, sh);
  // Move stage 2's first W to the front, before any B.
  auto w = std::find_if(early[2].begin(), early[2].end(),
                        [](const Action& a) { return a.kind == ActionKind::kWeight; });
  const Action moved = *w;
  early[2].erase(w);
  early[2].insert(early[2].begin(), moved);
  sim = SimulatePipeline(early, sh, PipelineCosts{});
  ASSERT_FALSE(sim.ok());
  EXPECT_TRUE(absl::StrContains(sim.status().message(), "before its input-gradient backward"))
      << sim.status();
}

}  // namespace
}  // namespace loom
