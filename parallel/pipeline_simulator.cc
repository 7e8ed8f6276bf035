#include "parallel/pipeline_simulator.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace loom {
namespace {

// A message: (is gradient, micro-batch, boundary).
using MessageKey = std::tuple<bool, int, int>;

MessageKey KeyOf(const Transfer& t) { return {IsGrad(t.kind), t.micro_batch, t.boundary}; }

std::string MessageName(const MessageKey& k) {
  return absl::StrCat(std::get<0>(k) ? "gradient" : "activation", " of micro-batch ",
                      std::get<1>(k), " across virtual-stage boundary ", std::get<2>(k));
}

// Where each end of a message sits and when it was posted (negative: not yet).
struct MessageEnds {
  int send_stage = -1, recv_stage = -1;
  double send_posted = -1, recv_posted = -1;
};

std::string At(int stage, size_t index, const Action& a, const PipelineShape& shape) {
  return absl::StrCat("stage ", stage, " action ", index, " (", ActionName(a, shape), ")");
}

// Checks indices and that each transfer names the neighbour its boundary implies, then pairs the
// ends of every message.
absl::StatusOr<std::map<MessageKey, MessageEnds>> PairMessages(const PipelineSchedule& schedule,
                                                               const PipelineShape& shape) {
  const int p = shape.stages, v = shape.virtual_stages, m = shape.micro_batches;
  std::map<MessageKey, MessageEnds> messages;
  for (int s = 0; s < p; ++s) {
    for (size_t i = 0; i < schedule[s].size(); ++i) {
      const Action& a = schedule[s][i];
      if (a.kind != ActionKind::kExchange) {
        if (a.micro_batch < 0 || a.micro_batch >= m || a.chunk < 0 || a.chunk >= v) {
          return absl::InvalidArgumentError(absl::StrCat(At(s, i, a, shape),
                                                         ": micro-batch must be in 0..", m - 1,
                                                         " and chunk in 0..", v - 1));
        }
        if (!a.transfers.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(At(s, i, a, shape), ": a compute action carries transfers"));
        }
        continue;
      }
      if (a.transfers.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(At(s, i, a, shape), ": empty exchange"));
      }
      for (const Transfer& t : a.transfers) {
        if (t.micro_batch < 0 || t.micro_batch >= m || t.chunk < 0 || t.chunk >= v) {
          return absl::InvalidArgumentError(absl::StrCat(At(s, i, a, shape),
                                                         ": transfer micro-batch must be in 0..",
                                                         m - 1, " and chunk in 0..", v - 1));
        }
        const int k = shape.VirtualStage(s, t.chunk);
        const bool before =
            t.kind == TransferKind::kRecvActivation || t.kind == TransferKind::kSendGrad;
        const int boundary = before ? k - 1 : k;
        const int other = before ? k - 1 : k + 1;  // the virtual stage at the other end
        if (other < 0 || other >= shape.virtual_total() || t.boundary != boundary ||
            t.peer != other % p || t.peer_chunk != other / p) {
          return absl::InvalidArgumentError(absl::StrCat(
              At(s, i, a, shape), ": ", TransferKindName(t.kind), " of chunk ", t.chunk,
              " names peer stage ", t.peer, " chunk ", t.peer_chunk, " boundary ", t.boundary,
              "; virtual stage ", k, " has no such neighbour"));
        }
        MessageEnds& e = messages[KeyOf(t)];
        int& end = IsSend(t.kind) ? e.send_stage : e.recv_stage;
        if (end != -1) {
          return absl::InvalidArgumentError(absl::StrCat(
              At(s, i, a, shape), ": ", IsSend(t.kind) ? "sends " : "receives ", "the ",
              MessageName(KeyOf(t)), " a second time (first on stage ", end, ")"));
        }
        end = s;
      }
    }
  }
  for (const auto& [key, e] : messages) {
    if (e.send_stage == -1 || e.recv_stage == -1) {
      return absl::InvalidArgumentError(
          absl::StrCat("the ", MessageName(key), " is ",
                       e.send_stage == -1 ? absl::StrCat("received by stage ", e.recv_stage)
                                          : absl::StrCat("sent by stage ", e.send_stage),
                       " but never ", e.send_stage == -1 ? "sent" : "received"));
    }
  }
  return messages;
}

// What one stage has done so far.
struct StageState {
  size_t pc = 0;        // next action
  double t = 0;         // when the stage is free
  bool posted = false;  // the exchange at pc has been posted
  std::set<std::pair<int, int>> forwarded, backwarded, weighted;  // (mb, chunk)
  bool has_weight = false;  // the list has W actions: B is the input-gradient half
  std::set<MessageKey> received;
  int in_flight = 0;
};

double Duration(const PipelineCosts& c, int stage, bool forward) {
  const std::vector<double>& per = forward ? c.stage_forward : c.stage_backward;
  if (!per.empty()) return per[stage];
  return forward ? c.forward : c.backward;
}

// A compute's duration: with W actions in the list, B and W share the backward.
double ComputeDuration(const PipelineCosts& c, int stage, ActionKind kind, bool split) {
  if (kind == ActionKind::kForward) return Duration(c, stage, true);
  const double backward = Duration(c, stage, false);
  if (!split) return backward;
  return kind == ActionKind::kWeight ? backward * c.weight_share : backward * (1 - c.weight_share);
}

}  // namespace

absl::StatusOr<PipelineSimulation> SimulatePipeline(const PipelineSchedule& schedule,
                                                    const PipelineShape& shape,
                                                    const PipelineCosts& costs) {
  const int p = shape.stages;
  if (p < 1 || shape.micro_batches < 1 || shape.virtual_stages < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline simulation: stages (", p, "), micro-batches (", shape.micro_batches,
                     ") and virtual stages (", shape.virtual_stages, ") must each be >= 1"));
  }
  if (static_cast<int>(schedule.size()) != p) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline simulation: the schedule has ",
                                                   schedule.size(), " stage lists, expected ", p));
  }
  for (const auto* per : {&costs.stage_forward, &costs.stage_backward}) {
    if (!per->empty() && static_cast<int>(per->size()) != p) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pipeline simulation: per-stage durations have ", per->size(), " entries, expected ", p));
    }
  }
  for (int s = 0; s < p; ++s) {
    if (!(Duration(costs, s, true) >= 0) || !(Duration(costs, s, false) >= 0) ||
        !(costs.latency >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pipeline simulation: durations and latency must be >= 0 (stage ", s,
                       ": forward ", Duration(costs, s, true), ", backward ",
                       Duration(costs, s, false), ", latency ", costs.latency, ")"));
    }
  }
  if (!(costs.weight_share >= 0 && costs.weight_share <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline simulation: weight_share must be in [0, 1], got ", costs.weight_share));
  }
  auto paired = PairMessages(schedule, shape);
  if (!paired.ok()) return paired.status();
  std::map<MessageKey, MessageEnds>& messages = *paired;

  PipelineSimulation sim;
  sim.stages.resize(p);
  for (int s = 0; s < p; ++s) sim.stages[s].times.resize(schedule[s].size());
  std::vector<StageState> state(p);
  for (int s = 0; s < p; ++s) {
    for (const Action& a : schedule[s]) {
      if (a.kind == ActionKind::kWeight) state[s].has_weight = true;
    }
  }
  const int last_virtual = shape.virtual_total() - 1;
  const bool eager = costs.send_mode == SendMode::kEager;

  // Advance every stage as far as it can; repeat until nothing moves. Times do not depend on
  // the order stages are visited: an exchange completes only once all it waits for is posted.
  bool moved = true;
  while (moved) {
    moved = false;
    for (int s = 0; s < p; ++s) {
      StageState& st = state[s];
      StageReport& rep = sim.stages[s];
      while (st.pc < schedule[s].size()) {
        const Action& a = schedule[s][st.pc];
        if (a.kind == ActionKind::kWeight) {
          const std::pair<int, int> id{a.micro_batch, a.chunk};
          if (st.weighted.count(id)) {
            return absl::InvalidArgumentError(
                absl::StrCat(At(s, st.pc, a, shape), " runs a second time"));
          }
          if (!st.backwarded.count(id)) {
            return absl::InvalidArgumentError(absl::StrCat(
                At(s, st.pc, a, shape), " runs before its input-gradient backward (B)"));
          }
          st.weighted.insert(id);
          --st.in_flight;
          const double d = ComputeDuration(costs, s, a.kind, true);
          rep.times[st.pc] = {st.t, st.t + d};
          rep.busy += d;
          st.t += d;
          ++st.pc;
          moved = true;
          continue;
        }
        if (a.kind == ActionKind::kForward || a.kind == ActionKind::kBackward) {
          const bool fwd = a.kind == ActionKind::kForward;
          const std::pair<int, int> id{a.micro_batch, a.chunk};
          const int k = shape.VirtualStage(s, a.chunk);
          auto& done = fwd ? st.forwarded : st.backwarded;
          if (done.count(id)) {
            return absl::InvalidArgumentError(
                absl::StrCat(At(s, st.pc, a, shape), " runs a second time"));
          }
          if (fwd && k > 0 && !st.received.count({false, a.micro_batch, k - 1})) {
            return absl::InvalidArgumentError(absl::StrCat(
                At(s, st.pc, a, shape), " runs before its input activation was received"));
          }
          if (!fwd && !st.forwarded.count(id)) {
            return absl::InvalidArgumentError(
                absl::StrCat(At(s, st.pc, a, shape), " runs before its forward"));
          }
          if (!fwd && k < last_virtual && !st.received.count({true, a.micro_batch, k})) {
            return absl::InvalidArgumentError(absl::StrCat(
                At(s, st.pc, a, shape), " runs before its output gradient was received"));
          }
          done.insert(id);
          if (fwd) {
            ++st.in_flight;
          } else if (!st.has_weight) {
            --st.in_flight;  // with W actions the activations are held until the W
          }
          rep.max_in_flight = std::max(rep.max_in_flight, st.in_flight);
          const double d = ComputeDuration(costs, s, a.kind, st.has_weight);
          rep.times[st.pc] = {st.t, st.t + d};
          rep.busy += d;
          st.t += d;
          ++st.pc;
          moved = true;
          continue;
        }
        // An exchange: post its ends once, then see whether all it waits for is posted.
        if (!st.posted) {
          for (const Transfer& t : a.transfers) {
            if (IsSend(t.kind)) {
              const int c = t.chunk;
              const bool ready = IsGrad(t.kind) ? st.backwarded.count({t.micro_batch, c}) > 0
                                                : st.forwarded.count({t.micro_batch, c}) > 0;
              if (!ready) {
                return absl::InvalidArgumentError(absl::StrCat(At(s, st.pc, a, shape),
                                                               " sends the ", MessageName(KeyOf(t)),
                                                               " before computing it"));
              }
              messages[KeyOf(t)].send_posted = st.t;
            } else {
              messages[KeyOf(t)].recv_posted = st.t;
            }
          }
          st.posted = true;
          moved = true;
        }
        double end = st.t;
        bool complete = true;
        for (const Transfer& t : a.transfers) {
          const MessageEnds& e = messages[KeyOf(t)];
          if (IsSend(t.kind)) {
            if (eager) continue;
            if (e.recv_posted < 0) complete = false;
            end = std::max(end, e.recv_posted);
          } else {
            if (e.send_posted < 0) complete = false;
            end = std::max(end, e.send_posted);
          }
        }
        if (!complete) break;
        end += costs.latency;
        for (const Transfer& t : a.transfers) {
          if (!IsSend(t.kind)) st.received.insert(KeyOf(t));
        }
        rep.times[st.pc] = {st.t, end};
        rep.exchange_wait += end - st.t;
        st.t = end;
        st.posted = false;
        ++st.pc;
        moved = true;
      }
    }
  }

  std::vector<std::string> stuck;
  for (int s = 0; s < p; ++s) {
    const StageState& st = state[s];
    if (st.pc == schedule[s].size()) continue;
    const Action& a = schedule[s][st.pc];
    std::vector<std::string> waits;
    for (const Transfer& t : a.transfers) {
      const MessageEnds& e = messages[KeyOf(t)];
      if (IsSend(t.kind) && !eager && e.recv_posted < 0) {
        waits.push_back(absl::StrCat("stage ", t.peer, " to receive the ", MessageName(KeyOf(t))));
      } else if (!IsSend(t.kind) && e.send_posted < 0) {
        waits.push_back(absl::StrCat("stage ", t.peer, " to send the ", MessageName(KeyOf(t))));
      }
    }
    stuck.push_back(
        absl::StrCat(At(s, st.pc, a, shape), " waits for ", absl::StrJoin(waits, " and ")));
  }
  if (!stuck.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pipeline deadlock: ", absl::StrJoin(stuck, "; ")));
  }

  // Every (mb, chunk) forward and backward ran on every stage.
  for (int s = 0; s < p; ++s) {
    for (int mb = 0; mb < shape.micro_batches; ++mb) {
      for (int c = 0; c < shape.virtual_stages; ++c) {
        for (bool fwd : {true, false}) {
          const auto& done = fwd ? state[s].forwarded : state[s].backwarded;
          if (!done.count({mb, c})) {
            return absl::InvalidArgumentError(absl::StrCat("stage ", s, " never runs the ",
                                                           fwd ? "forward" : "backward",
                                                           " of micro-batch ", mb, " chunk ", c));
          }
        }
        if (state[s].has_weight && !state[s].weighted.count({mb, c})) {
          return absl::InvalidArgumentError(absl::StrCat(
              "stage ", s, " never runs the weight-gradient backward (W) of micro-batch ", mb,
              " chunk ", c, " (its other W's are in the list)"));
        }
      }
    }
  }

  for (int s = 0; s < p; ++s) {
    sim.stages[s].finish = state[s].t;
    sim.makespan = std::max(sim.makespan, state[s].t);
  }
  double idle = 0;
  for (StageReport& rep : sim.stages) {
    rep.idle = sim.makespan - rep.busy;
    rep.bubble_fraction = sim.makespan > 0 ? rep.idle / sim.makespan : 0;
    idle += rep.idle;
  }
  sim.bubble_fraction = sim.makespan > 0 ? idle / (p * sim.makespan) : 0;
  return sim;
}

std::string FormatTimeline(const PipelineSchedule& schedule, const PipelineShape& shape,
                           const PipelineSimulation& sim, double quantum) {
  if (!(quantum > 0) || schedule.size() != sim.stages.size()) {
    return absl::StrCat("(no timeline: quantum ", quantum, ", ", schedule.size(),
                        " stage lists for ", sim.stages.size(), " simulated stages)\n");
  }
  const int cells = static_cast<int>(std::ceil(sim.makespan / quantum - 1e-9));
  size_t width = 1;
  for (const auto& actions : schedule) {
    for (const Action& a : actions) {
      if (a.kind != ActionKind::kExchange) width = std::max(width, ActionName(a, shape).size());
    }
  }
  std::string out = absl::StrFormat("one cell = %g time units\n", quantum);
  for (size_t s = 0; s < schedule.size(); ++s) {
    std::vector<std::string> row(cells, ".");
    for (size_t i = 0; i < schedule[s].size(); ++i) {
      const Action& a = schedule[s][i];
      if (a.kind == ActionKind::kExchange) continue;
      const ActionTime& t = sim.stages[s].times[i];
      const int from = static_cast<int>(std::lround(t.start / quantum));
      const int to = std::max(from + 1, static_cast<int>(std::lround(t.end / quantum)));
      for (int c = from; c < to && c < cells; ++c) row[c] = ActionName(a, shape);
    }
    absl::StrAppend(&out, absl::StrFormat("stage %-3d|", s));
    for (const std::string& cell : row) {
      absl::StrAppend(&out, absl::StrFormat("%-*s|", static_cast<int>(width), cell));
    }
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out, absl::StrFormat("%-6s %10s %10s %10s %10s %9s %7s\n", "stage", "busy",
                                        "idle", "exchange", "finish", "in-flight", "bubble"));
  for (size_t s = 0; s < sim.stages.size(); ++s) {
    const StageReport& r = sim.stages[s];
    absl::StrAppend(
        &out, absl::StrFormat("%-6d %10.4g %10.4g %10.4g %10.4g %9d %7.4f\n", s, r.busy, r.idle,
                              r.exchange_wait, r.finish, r.max_in_flight, r.bubble_fraction));
  }
  absl::StrAppend(&out, absl::StrFormat("makespan %.4g, bubble fraction %.4f\n", sim.makespan,
                                        sim.bubble_fraction));
  return out;
}

static absl::StatusOr<PipelineBubble> SimulatedPipelineBubble(PipelineScheduleKind kind,
                                                              const PipelineShape& shape);

absl::StatusOr<PipelineBubble> SchedulePipelineBubble(PipelineScheduleKind kind,
                                                      const PipelineShape& shape) {
  // A pure function of (kind, shape), asked once per layout by the memory estimate: the layout
  // planner walks thousands of layouts sharing a few hundred shapes, some of them simulating
  // p * m * v in the hundreds of thousands of actions, so results are kept.
  static std::mutex mu;
  static std::map<std::tuple<int, int, int, int>, absl::StatusOr<PipelineBubble>> memo;
  const auto key = std::make_tuple(static_cast<int>(kind), shape.stages, shape.micro_batches,
                                   shape.virtual_stages);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = memo.find(key);
    if (it != memo.end()) return it->second;
  }
  absl::StatusOr<PipelineBubble> result = SimulatedPipelineBubble(kind, shape);
  std::lock_guard<std::mutex> lock(mu);
  memo.emplace(key, result);
  return result;
}

static absl::StatusOr<PipelineBubble> SimulatedPipelineBubble(PipelineScheduleKind kind,
                                                              const PipelineShape& shape) {
  PipelineBubble out;
  if (shape.stages <= 1) {
    out.in_flight.assign(1, 1);
    return out;
  }
  LOOM_ASSIGN_OR_RETURN(PipelineSchedule schedule, BuildPipelineSchedule(kind, shape));
  LOOM_ASSIGN_OR_RETURN(PipelineSimulation sim, SimulatePipeline(schedule, shape, PipelineCosts{}));
  out.bubble_fraction = sim.bubble_fraction;
  double busy = 0, idle = 0;
  for (const StageReport& r : sim.stages) {
    busy += r.busy;
    idle += r.idle;
    out.in_flight.push_back(r.max_in_flight);
  }
  out.overhead = busy > 0 ? idle / busy : 0;
  return out;
}

}  // namespace loom
