// Pipeline schedules as data and the simulator that runs them, with no communication: every
// (micro-batch, chunk) forward precedes its backward; every send has exactly one receive;
// all stages together finish for many (p, m, v); the in-flight bounds of 1F1B and GPipe; the
// bubble fractions (p-1)/(m+p-1) and (p-1)/(v*m+p-1), exactly; deadlocks and malformed
// schedules are reported by name; the text forms.
#include "parallel/pipeline_schedule.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "parallel/pipeline_simulator.h"

namespace loom {
namespace {

using Kind = PipelineScheduleKind;

struct Case {
  Kind kind;
  PipelineShape shape;
  std::string Name() const {
    return absl::StrCat(PipelineScheduleName(kind), " p", shape.stages, " m", shape.micro_batches,
                        " v", shape.virtual_stages);
  }
};

// Many valid shapes of every kind, including m < p, m not a multiple of p (1F1B, GPipe) and
// m == p (interleaved, where warm-up covers nearly everything).
std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (int p = 1; p <= 6; ++p) {
    for (int m = 1; m <= 9; ++m) {
      cases.push_back({Kind::kGPipe, {p, m, 1}});
      cases.push_back({Kind::kOneFOneB, {p, m, 1}});
    }
    if (p < 2) continue;
    for (int v = 2; v <= 4; ++v) {
      for (int groups = 1; groups <= 3; ++groups) {
        cases.push_back({Kind::kInterleaved, {p, groups * p, v}});
      }
    }
  }
  cases.push_back({Kind::kOneFOneB, {8, 32, 1}});
  cases.push_back({Kind::kInterleaved, {8, 32, 2}});
  return cases;
}

PipelineSchedule Build(const Case& c) {
  auto s = BuildPipelineSchedule(c.kind, c.shape);
  EXPECT_TRUE(s.ok()) << c.Name() << ": " << s.status();
  return s.ok() ? *s : PipelineSchedule(c.shape.stages);
}

PipelineSimulation Simulate(const PipelineSchedule& s, const PipelineShape& shape,
                            PipelineCosts costs = {}) {
  auto sim = SimulatePipeline(s, shape, costs);
  EXPECT_TRUE(sim.ok()) << sim.status();
  return sim.ok() ? *sim : PipelineSimulation{};
}

TEST(PipelineScheduleTest, EachForwardOnceThenItsBackwardOnce) {
  for (const Case& c : AllCases()) {
    const PipelineSchedule schedule = Build(c);
    for (int s = 0; s < c.shape.stages; ++s) {
      std::map<std::pair<int, int>, int> forward_at, backward_at;
      int i = 0;
      for (const Action& a : schedule[s]) {
        ++i;
        if (a.kind == ActionKind::kExchange) continue;
        auto& at = a.kind == ActionKind::kForward ? forward_at : backward_at;
        const bool first = at.emplace(std::make_pair(a.micro_batch, a.chunk), i).second;
        EXPECT_TRUE(first) << c.Name() << " stage " << s << " repeats " << ActionName(a, c.shape);
      }
      const size_t units = static_cast<size_t>(c.shape.micro_batches) * c.shape.virtual_stages;
      EXPECT_EQ(forward_at.size(), units) << c.Name() << " stage " << s;
      EXPECT_EQ(backward_at.size(), units) << c.Name() << " stage " << s;
      for (const auto& [id, at] : backward_at) {
        ASSERT_TRUE(forward_at.count(id)) << c.Name() << " stage " << s;
        EXPECT_LT(forward_at[id], at)
            << c.Name() << " stage " << s << " micro-batch " << id.first << " chunk " << id.second;
      }
    }
  }
}

// The transfers a compute needs, written out independently of the builder from the chunk
// numbering: chunk c of stage s is virtual stage c * p + s.
std::vector<Transfer> ExpectedTransfers(const PipelineShape& shape, int stage, const Action& a,
                                        bool inputs) {
  const int p = shape.stages, k = a.chunk * p + stage, last = p * shape.virtual_stages - 1;
  const bool fwd = a.kind == ActionKind::kForward;
  // Forward input and backward output cross the edge before k; the others the edge after.
  const bool before = fwd == inputs;
  const int other = before ? k - 1 : k + 1;
  if (other < 0 || other > last) return {};
  TransferKind kind = fwd ? (inputs ? TransferKind::kRecvActivation : TransferKind::kSendActivation)
                          : (inputs ? TransferKind::kRecvGrad : TransferKind::kSendGrad);
  return {Transfer{kind, other % p, a.micro_batch, a.chunk, other / p, before ? k - 1 : k}};
}

TEST(PipelineScheduleTest, EverySendHasExactlyOneReceiveOnTheNeighbour) {
  for (const Case& c : AllCases()) {
    const PipelineSchedule schedule = Build(c);
    const PipelineShape& sh = c.shape;
    // (is grad, mb, boundary) -> (sending stage, receiving stage), each seen once.
    std::map<std::tuple<bool, int, int>, std::pair<int, int>> ends;
    std::multiset<std::tuple<bool, bool, int, int>> seen;  // (send, grad, mb, boundary)
    std::set<int> tags;
    for (int s = 0; s < sh.stages; ++s) {
      for (const Action& a : schedule[s]) {
        for (const Transfer& t : a.transfers) {
          seen.insert({IsSend(t.kind), IsGrad(t.kind), t.micro_batch, t.boundary});
          auto& e = ends[{IsGrad(t.kind), t.micro_batch, t.boundary}];
          (IsSend(t.kind) ? e.first : e.second) = s + 1;
          // The peer is the stage holding the virtual stage at the other end of the boundary.
          const int k = sh.VirtualStage(s, t.chunk);
          const int other = t.boundary == k ? k + 1 : k - 1;
          EXPECT_TRUE(t.boundary == k || t.boundary == k - 1) << c.Name();
          EXPECT_EQ(t.peer, other % sh.stages) << c.Name();
          EXPECT_EQ(t.peer_chunk, other / sh.stages) << c.Name();
          tags.insert(MessageTag(t, sh));
        }
      }
    }
    // Each message of the step: an activation and a gradient per micro-batch and edge.
    const size_t messages = 2 * static_cast<size_t>(sh.micro_batches) * (sh.virtual_total() - 1);
    EXPECT_EQ(ends.size(), messages) << c.Name();
    EXPECT_EQ(seen.size(), 2 * messages) << c.Name();
    for (const auto& key : seen) EXPECT_EQ(seen.count(key), 1u) << c.Name();
    for (const auto& [key, e] : ends) {
      EXPECT_NE(e.first, 0) << c.Name() << " never sent";
      EXPECT_NE(e.second, 0) << c.Name() << " never received";
    }
    EXPECT_EQ(tags.size(), messages) << c.Name() << ": tags collide";
  }
}

// NCCL matches sends and receives between two ranks by order alone (and MPI does with one
// tag): for every ordered pair of stages, the messages one sends to the other, in list order,
// are the messages the other receives from it, in the same order.
TEST(PipelineScheduleTest, MessagesBetweenTwoStagesAreReceivedInTheOrderSent) {
  for (const Case& c : AllCases()) {
    const PipelineSchedule schedule = Build(c);
    std::map<std::pair<int, int>, std::vector<std::tuple<bool, int, int>>> sent, received;
    for (int s = 0; s < c.shape.stages; ++s) {
      for (const Action& a : schedule[s]) {
        for (const Transfer& t : a.transfers) {
          auto& seq = IsSend(t.kind) ? sent[{s, t.peer}] : received[{t.peer, s}];
          seq.push_back({IsGrad(t.kind), t.micro_batch, t.boundary});
        }
      }
    }
    EXPECT_EQ(sent, received) << c.Name();
  }
}

// Each compute's inputs are received in the exchange right before its step and its outputs
// sent in the exchange right after: the builder's transfers are the ones the chunk numbering
// implies, nothing more.
TEST(PipelineScheduleTest, TransfersFollowTheChunkNumbering) {
  for (const Case& c : AllCases()) {
    const PipelineSchedule schedule = Build(c);
    for (int s = 0; s < c.shape.stages; ++s) {
      std::multiset<std::tuple<int, int, int, int, int, int>> built, expected;
      auto key = [](const Transfer& t) {
        return std::make_tuple(static_cast<int>(t.kind), t.peer, t.micro_batch, t.chunk,
                               t.peer_chunk, t.boundary);
      };
      for (const Action& a : schedule[s]) {
        for (const Transfer& t : a.transfers) built.insert(key(t));
        if (a.kind == ActionKind::kExchange) continue;
        for (bool inputs : {true, false}) {
          for (const Transfer& t : ExpectedTransfers(c.shape, s, a, inputs)) {
            expected.insert(key(t));
          }
        }
      }
      EXPECT_EQ(built, expected) << c.Name() << " stage " << s;
    }
  }
}

TEST(PipelineScheduleTest, InterleavedChunksAreChunkMajorLikeMegatron) {
  // p = 2, v = 2: model order is (stage 0 chunk 0), (stage 1 chunk 0), (stage 0 chunk 1),
  // (stage 1 chunk 1); stage 1's chunk 0 feeds stage 0's chunk 1.
  const PipelineShape sh{2, 2, 2};
  auto stage1 = BuildStageSchedule(Kind::kInterleaved, sh, 1);
  ASSERT_TRUE(stage1.ok()) << stage1.status();
  bool found = false;
  for (const Action& a : *stage1) {
    for (const Transfer& t : a.transfers) {
      if (t.kind == TransferKind::kSendActivation && t.chunk == 0 && t.micro_batch == 0) {
        EXPECT_EQ(t.peer, 0);
        EXPECT_EQ(t.peer_chunk, 1);
        EXPECT_EQ(t.boundary, 1);
        found = true;
      }
    }
  }
  EXPECT_TRUE(found);
  // Stage 0 starts with the first chunk of micro-batches 0 and 1, then their second chunk.
  auto order = PipelineComputeOrder(Kind::kInterleaved, sh, 0);
  ASSERT_TRUE(order.ok());
  ASSERT_GE(order->size(), 4u);
  EXPECT_EQ((*order)[0], Action::Forward(0, 0));
  EXPECT_EQ((*order)[1], Action::Forward(1, 0));
  EXPECT_EQ((*order)[2], Action::Forward(0, 1));
  EXPECT_EQ((*order)[3], Action::Forward(1, 1));
}

TEST(PipelineScheduleTest, OneFOneBOrderIsWarmupSteadyCooldown) {
  auto order = PipelineComputeOrder(Kind::kOneFOneB, {4, 6, 1}, 1);
  ASSERT_TRUE(order.ok());
  std::string names;
  for (const Action& a : *order) absl::StrAppend(&names, ActionName(a, {4, 6, 1}), " ");
  EXPECT_EQ(names, "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5 ");
}

TEST(PipelineScheduleTest, RefusesShapesTheScheduleCannotRun) {
  auto interleaved = BuildPipelineSchedule(Kind::kInterleaved, {4, 6, 2});
  ASSERT_FALSE(interleaved.ok());
  EXPECT_TRUE(absl::StrContains(interleaved.status().message(),
                                "micro-batches (6) to be a multiple of the stages (4)"))
      << interleaved.status();
  auto one_chunk = BuildPipelineSchedule(Kind::kInterleaved, {4, 8, 1});
  ASSERT_FALSE(one_chunk.ok());
  EXPECT_TRUE(absl::StrContains(one_chunk.status().message(), "virtual stages 1"));
  auto virt = BuildPipelineSchedule(Kind::kOneFOneB, {4, 8, 2});
  ASSERT_FALSE(virt.ok());
  EXPECT_TRUE(absl::StrContains(virt.status().message(), "1f1b needs virtual stages 1 (got 2)"))
      << virt.status();
  auto gpipe = BuildPipelineSchedule(Kind::kGPipe, {4, 8, 3});
  ASSERT_FALSE(gpipe.ok());
  EXPECT_TRUE(absl::StrContains(gpipe.status().message(), "gpipe needs virtual stages 1 (got 3)"));
  auto empty = BuildPipelineSchedule(Kind::kOneFOneB, {2, 0, 1});
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(absl::StrContains(empty.status().message(), "micro-batches (0)"));
  auto stage = BuildStageSchedule(Kind::kOneFOneB, {2, 4, 1}, 2);
  ASSERT_FALSE(stage.ok());
  EXPECT_TRUE(absl::StrContains(stage.status().message(), "stage index 2 is outside 0..1"));
}

// All stages together finish, with sends that wait for their receive (the strict model) and
// with buffered sends, and the simulator's own checks (inputs received, sends computed, each
// compute once) pass.
TEST(PipelineSimulatorTest, EveryScheduleFinishesWithoutDeadlock) {
  for (const Case& c : AllCases()) {
    const PipelineSchedule schedule = Build(c);
    for (SendMode mode : {SendMode::kRendezvous, SendMode::kEager}) {
      PipelineCosts costs;
      costs.send_mode = mode;
      for (double latency : {0.0, 0.25}) {
        costs.latency = latency;
        auto sim = SimulatePipeline(schedule, c.shape, costs);
        ASSERT_TRUE(sim.ok()) << c.Name() << " latency " << latency << ": " << sim.status();
        const double work = 3.0 * c.shape.micro_batches * c.shape.virtual_stages;
        for (const StageReport& r : sim->stages) {
          EXPECT_DOUBLE_EQ(r.busy, work) << c.Name();
          EXPECT_NEAR(r.idle, sim->makespan - work, 1e-9) << c.Name();
          EXPECT_LE(r.finish, sim->makespan) << c.Name();
        }
      }
    }
  }
}

TEST(PipelineSimulatorTest, OneFOneBKeepsAtMostStagesAfterItInFlightGPipeKeepsAll) {
  for (const Case& c : AllCases()) {
    if (c.kind == Kind::kInterleaved) continue;
    const PipelineSimulation sim = Simulate(Build(c), c.shape);
    const int p = c.shape.stages, m = c.shape.micro_batches;
    for (int s = 0; s < p; ++s) {
      const int in_flight = sim.stages[s].max_in_flight;
      if (c.kind == Kind::kOneFOneB) {
        EXPECT_LE(in_flight, p - s) << c.Name() << " stage " << s;
        EXPECT_EQ(in_flight, std::min(p - s, m)) << c.Name() << " stage " << s;
      } else {
        EXPECT_EQ(in_flight, m) << c.Name() << " stage " << s;
      }
    }
  }
}

TEST(PipelineSimulatorTest, InterleavedInFlightIsMegatronsWarmupPlusOne) {
  for (const Case& c : AllCases()) {
    if (c.kind != Kind::kInterleaved) continue;
    const PipelineSimulation sim = Simulate(Build(c), c.shape);
    const int p = c.shape.stages, v = c.shape.virtual_stages;
    const int total = c.shape.micro_batches * v;
    for (int s = 0; s < p; ++s) {
      const int warmup = std::min((p - s - 1) * 2 + (v - 1) * p, total);
      EXPECT_EQ(sim.stages[s].max_in_flight, std::min(warmup + 1, total))
          << c.Name() << " stage " << s;
    }
  }
}

// Forward 1, backward 2 per chunk: the pipeline runs (m*v + p - 1) * 3, so idle / makespan is
// (p-1)/(m+p-1) without chunks and (p-1)/(v*m+p-1) with them, on every stage. The makespan
// (m*v + p - 1) * (forward + backward) holds for other backward costs too.
TEST(PipelineSimulatorTest, BubbleFractionsAreTheFormulas) {
  for (const Case& c : AllCases()) {
    const int p = c.shape.stages, m = c.shape.micro_batches, v = c.shape.virtual_stages;
    const double expected = static_cast<double>(p - 1) / (v * m + p - 1);
    const PipelineSchedule schedule = Build(c);
    for (SendMode mode : {SendMode::kRendezvous, SendMode::kEager}) {
      for (double backward : {2.0, 0.5, 3.0}) {
        PipelineCosts costs;
        costs.send_mode = mode;
        costs.backward = backward;
        const PipelineSimulation sim = Simulate(schedule, c.shape, costs);
        EXPECT_NEAR(sim.makespan, (1 + backward) * (v * m + p - 1), 1e-9) << c.Name();
        EXPECT_NEAR(sim.bubble_fraction, expected, 1e-9) << c.Name();
        for (const StageReport& r : sim.stages) {
          EXPECT_NEAR(r.bubble_fraction, expected, 1e-9) << c.Name();
        }
      }
    }
  }
}

// The published factor: with each stage's work split into v chunks (per-chunk times 1/v and
// 2/v), the idle time of interleaving is the idle time of 1F1B divided by v.
TEST(PipelineSimulatorTest, InterleavingDividesTheBubbleByV) {
  for (int p : {2, 3, 4, 8}) {
    for (int v : {2, 3, 4}) {
      for (int m : {p, 2 * p, 4 * p}) {
        const PipelineShape flat{p, m, 1}, chunked{p, m, v};
        const PipelineSimulation base = Simulate(Build({Kind::kOneFOneB, flat}), flat);
        PipelineCosts costs;
        costs.forward = 1.0 / v;
        costs.backward = 2.0 / v;
        const PipelineSimulation inter =
            Simulate(Build({Kind::kInterleaved, chunked}), chunked, costs);
        const double base_idle = base.stages[0].idle, inter_idle = inter.stages[0].idle;
        EXPECT_NEAR(base_idle, 3.0 * (p - 1), 1e-9);
        EXPECT_NEAR(inter_idle * v, base_idle, 1e-9) << "p" << p << " m" << m << " v" << v;
        EXPECT_LT(inter.bubble_fraction, base.bubble_fraction);
      }
    }
  }
}

// One micro-batch crosses p - 1 edges forward and p - 1 back, each adding the latency once.
TEST(PipelineSimulatorTest, LatencyAddsOncePerEdgeOnTheCriticalPath) {
  for (int p = 1; p <= 5; ++p) {
    for (SendMode mode : {SendMode::kRendezvous, SendMode::kEager}) {
      PipelineCosts costs;
      costs.latency = 0.5;
      costs.send_mode = mode;
      const PipelineShape sh{p, 1, 1};
      const PipelineSimulation sim = Simulate(Build({Kind::kOneFOneB, sh}), sh, costs);
      EXPECT_NEAR(sim.makespan, 3.0 * p + 2 * (p - 1) * 0.5, 1e-9) << "p" << p;
    }
  }
}

TEST(PipelineSimulatorTest, PerStageDurations) {
  const PipelineShape sh{3, 1, 1};
  PipelineCosts costs;
  costs.stage_forward = {1, 2, 3};
  costs.stage_backward = {4, 5, 6};
  const PipelineSimulation sim = Simulate(Build({Kind::kOneFOneB, sh}), sh, costs);
  EXPECT_DOUBLE_EQ(sim.makespan, 21);
  EXPECT_DOUBLE_EQ(sim.stages[2].busy, 9);
  EXPECT_DOUBLE_EQ(sim.stages[2].finish, 1 + 2 + 3 + 6);
  costs.stage_backward = {1};
  auto bad = SimulatePipeline(Build({Kind::kOneFOneB, sh}), sh, costs);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "1 entries, expected 3"));
}

// Hand-written schedules for p = 2, v = 1, where every message crosses boundary 0.
Transfer T(TransferKind kind, int peer, int mb) { return Transfer{kind, peer, mb, 0, 0, 0}; }
Action X(std::vector<Transfer> t) { return Action{ActionKind::kExchange, -1, -1, std::move(t)}; }
constexpr TransferKind kSendA = TransferKind::kSendActivation;
constexpr TransferKind kRecvA = TransferKind::kRecvActivation;
constexpr TransferKind kSendG = TransferKind::kSendGrad;
constexpr TransferKind kRecvG = TransferKind::kRecvGrad;

TEST(PipelineSimulatorTest, ReportsADeadlockNamingStagesAndActions) {
  const PipelineShape sh{2, 1, 1};
  // Stage 0 waits for the gradient before it sends the activation the gradient comes from.
  const PipelineSchedule schedule = {
      {Action::Forward(0, 0), X({T(kRecvG, 1, 0)}), X({T(kSendA, 1, 0)}), Action::Backward(0, 0)},
      {X({T(kRecvA, 0, 0)}), Action::Forward(0, 0), Action::Backward(0, 0), X({T(kSendG, 0, 0)})},
  };
  for (SendMode mode : {SendMode::kRendezvous, SendMode::kEager}) {
    PipelineCosts costs;
    costs.send_mode = mode;
    auto sim = SimulatePipeline(schedule, sh, costs);
    ASSERT_FALSE(sim.ok());
    const std::string msg(sim.status().message());
    EXPECT_TRUE(absl::StrContains(msg, "pipeline deadlock")) << msg;
    EXPECT_TRUE(absl::StrContains(msg,
                                  "stage 0 action 1 (X[recv g0 from s1]) waits for stage 1 "
                                  "to send the gradient of micro-batch 0"))
        << msg;
    EXPECT_TRUE(absl::StrContains(msg,
                                  "stage 1 action 0 (X[recv a0 from s0]) waits for stage 0 "
                                  "to send the activation of micro-batch 0"))
        << msg;
  }
}

// 1F1B for p = 2, m = 2 with each send and receive in an exchange of its own: fine when sends
// are buffered, a deadlock when a send waits for its receive (stage 0 sends a1 while stage 1
// sends g0, each before receiving the other's). This is why the pairing rule puts a step's
// sends and the next step's receives into one exchange.
TEST(PipelineSimulatorTest, UnpairedSendsDeadlockWhenSendsWaitForReceives) {
  const PipelineShape sh{2, 2, 1};
  const PipelineSchedule split = {
      {Action::Forward(0, 0), X({T(kSendA, 1, 0)}), Action::Forward(1, 0), X({T(kSendA, 1, 1)}),
       X({T(kRecvG, 1, 0)}), Action::Backward(0, 0), X({T(kRecvG, 1, 1)}), Action::Backward(1, 0)},
      {X({T(kRecvA, 0, 0)}), Action::Forward(0, 0), Action::Backward(0, 0), X({T(kSendG, 0, 0)}),
       X({T(kRecvA, 0, 1)}), Action::Forward(1, 0), Action::Backward(1, 0), X({T(kSendG, 0, 1)})},
  };
  PipelineCosts eager;
  eager.send_mode = SendMode::kEager;
  auto buffered = SimulatePipeline(split, sh, eager);
  ASSERT_TRUE(buffered.ok()) << buffered.status();
  auto strict = SimulatePipeline(split, sh, {});
  ASSERT_FALSE(strict.ok());
  const std::string msg(strict.status().message());
  EXPECT_TRUE(absl::StrContains(msg,
                                "stage 0 action 3 (X[send a1 to s1]) waits for stage 1 to "
                                "receive the activation of micro-batch 1"))
      << msg;
  EXPECT_TRUE(absl::StrContains(msg,
                                "stage 1 action 3 (X[send g0 to s0]) waits for stage 0 to "
                                "receive the gradient of micro-batch 0"))
      << msg;
  // The same computes paired by the rule finish either way, in the same time.
  const PipelineSimulation paired = Simulate(Build({Kind::kOneFOneB, sh}), sh);
  EXPECT_DOUBLE_EQ(paired.makespan, buffered->makespan);
}

TEST(PipelineSimulatorTest, RejectsMalformedSchedules) {
  const PipelineShape sh{2, 1, 1};
  const PipelineSchedule good = Build({Kind::kOneFOneB, sh});
  ASSERT_TRUE(SimulatePipeline(good, sh, {}).ok());

  auto expect_error = [&](const PipelineSchedule& s, const std::string& piece) {
    auto sim = SimulatePipeline(s, sh, {});
    ASSERT_FALSE(sim.ok()) << "expected an error containing: " << piece;
    EXPECT_TRUE(absl::StrContains(sim.status().message(), piece)) << sim.status();
  };
  // Stage 1 never receives: the activation is sent but not received (and the forward would
  // run without input).
  PipelineSchedule no_recv = good;
  no_recv[1].erase(no_recv[1].begin());
  expect_error(no_recv,
               "activation of micro-batch 0 across virtual-stage boundary 0 is sent by "
               "stage 0 but never received");
  // Stage 1 runs the forward before receiving its input.
  PipelineSchedule early = good;
  std::swap(early[1][0], early[1][1]);
  expect_error(early, "stage 1 action 0 (F0) runs before its input activation was received");
  // Stage 0 sends the activation before computing it.
  PipelineSchedule send_first = good;
  std::swap(send_first[0][0], send_first[0][1]);
  expect_error(send_first, "sends the activation of micro-batch 0");
  // A backward before its forward, a compute twice, a compute never.
  expect_error({{Action::Backward(0, 0), Action::Forward(0, 0)}, {}},
               "stage 0 action 0 (B0) runs before its forward");
  PipelineShape one{1, 1, 1};
  auto twice = SimulatePipeline({{Action::Forward(0, 0), Action::Forward(0, 0)}}, one, {});
  ASSERT_FALSE(twice.ok());
  EXPECT_TRUE(absl::StrContains(twice.status().message(), "runs a second time"));
  auto never = SimulatePipeline({{Action::Forward(0, 0)}}, one, {});
  ASSERT_FALSE(never.ok());
  EXPECT_TRUE(absl::StrContains(never.status().message(),
                                "stage 0 never runs the backward of micro-batch 0 chunk 0"));
  // A transfer naming the wrong peer, and the wrong number of stage lists.
  PipelineSchedule wrong_peer = good;
  wrong_peer[0][1].transfers[0].peer = 0;
  expect_error(wrong_peer, "names peer stage 0");
  expect_error({good[0]}, "the schedule has 1 stage lists, expected 2");
}

TEST(PipelineFormatTest, ScheduleLinesPerStage) {
  const PipelineShape sh{2, 3, 1};
  const PipelineSchedule schedule = Build({Kind::kOneFOneB, sh});
  EXPECT_EQ(FormatSchedule(schedule, sh),
            "stage 0: F0 X[send a0 to s1] F1 X[send a1 to s1, recv g0 from s1] B0 F2 "
            "X[send a2 to s1, recv g1 from s1] B1 X[recv g2 from s1] B2\n"
            "stage 1: X[recv a0 from s0] F0 B0 X[send g0 to s0, recv a1 from s0] F1 B1 "
            "X[send g1 to s0, recv a2 from s0] F2 B2 X[send g2 to s0]\n");
  EXPECT_EQ(FormatSchedule(schedule, sh, /*show_exchanges=*/false),
            "stage 0: F0 F1 B0 F2 B1 B2\n"
            "stage 1: F0 B0 F1 B1 F2 B2\n");
  const PipelineShape chunked{2, 2, 2};
  EXPECT_EQ(ActionName(Action::Forward(1, 1), chunked), "F1.1");
}

TEST(PipelineFormatTest, TimelineShowsComputesInTime) {
  const PipelineShape sh{2, 3, 1};
  const PipelineSchedule schedule = Build({Kind::kOneFOneB, sh});
  const PipelineSimulation sim = Simulate(schedule, sh);
  EXPECT_EQ(FormatTimeline(schedule, sh, sim, 1.0),
            "one cell = 1 time units\n"
            "stage 0  |F0|F1|. |. |B0|B0|F2|B1|B1|. |B2|B2|\n"
            "stage 1  |. |F0|B0|B0|F1|B1|B1|F2|B2|B2|. |. |\n"
            "stage        busy       idle   exchange     finish in-flight  bubble\n"
            "0               9          3          3         12         2  0.2500\n"
            "1               9          3          1         10         1  0.2500\n"
            "makespan 12, bubble fraction 0.2500\n");
}

}  // namespace
}  // namespace loom
