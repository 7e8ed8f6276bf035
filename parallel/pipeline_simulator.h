// A discrete-event simulator of all pipeline stages together. Each stage runs its action list
// (pipeline_schedule.h) in order: a compute takes its given duration; an exchange is posted when
// the stage reaches it and completes when its messages can complete (below), the stage waiting
// meanwhile. The simulator also checks the schedule as it goes: a compute whose input was not
// received, a send of something not yet computed, a message with no partner, a compute run
// twice or never: each is an error naming the stage and action. When no stage can move and some
// are unfinished it reports a deadlock naming each stuck stage, its action and what it waits for.
//
// Message semantics (PipelineCosts::send_mode):
// - kRendezvous (default, the strict one): a send completes only once its receive is posted,
//   as NCCL and MPI's large-message protocol behave. A schedule that finishes here finishes
//   under any runtime whose sends complete no later than that.
// - kEager: a send completes when posted (buffered); a receive when its send was posted.
// Either way a posted exchange completes at the latest time its messages complete, plus
// `latency` once (the messages of one batched call travel together).
//
// Reported per stage: busy (compute), idle (makespan - busy), time blocked in exchanges, finish
// time, the most (micro-batch, chunk) forwards whose backward has not run yet (with W actions:
// whose W has not run, as the activations are held until then), and the bubble
// fraction idle / makespan; for the whole pipeline the makespan and total idle / (p * makespan).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/pipeline_schedule.h"

namespace loom {

enum class SendMode { kRendezvous, kEager };

struct PipelineCosts {
  double forward = 1.0;   // one micro-batch through one chunk
  double backward = 2.0;  // its backward
  double latency = 0.0;   // added once to every exchange
  // Optional per-stage durations (p entries each) overriding forward / backward.
  std::vector<double> stage_forward;
  std::vector<double> stage_backward;
  SendMode send_mode = SendMode::kRendezvous;
  // In a schedule with W actions (ZERO_BUBBLE) the backward splits: B takes
  // (1 - weight_share) x backward and W weight_share x backward, so the work per micro-batch
  // is the same as in the other schedules. 0.5 is the paper's T_B = T_W.
  double weight_share = 0.5;
};

// When an action ran: computes from start to end; an exchange was posted at start and completed
// at end.
struct ActionTime {
  double start = 0;
  double end = 0;
};

struct StageReport {
  double busy = 0;                // sum of compute durations
  double idle = 0;                // makespan - busy
  double exchange_wait = 0;       // time between posting exchanges and their completion
  double finish = 0;              // end of the stage's last action
  int max_in_flight = 0;          // most (mb, chunk) forwards done whose backward (W) had not run
  double bubble_fraction = 0;     // idle / makespan
  std::vector<ActionTime> times;  // one per action of the stage's list
};

struct PipelineSimulation {
  double makespan = 0;         // the last finish over the stages
  double bubble_fraction = 0;  // sum of idle / (stages * makespan)
  std::vector<StageReport> stages;
};

// Runs `schedule` (one list per stage, schedule.size() == shape.stages).
absl::StatusOr<PipelineSimulation> SimulatePipeline(const PipelineSchedule& schedule,
                                                    const PipelineShape& shape,
                                                    const PipelineCosts& costs);

// The schedule's own bubble, the one home of that figure (the planner, `loom bench pipeline`,
// `loom bench scaling` and the memory estimate read it here rather than keeping formulas):
// the schedule built for `shape` and simulated with uniform costs (backward = 2 x forward, no
// latency). bubble_fraction is idle / (p * makespan); overhead = idle per stage / busy per
// stage, the time a stage adds to its compute ((p-1)/(v m) for 1F1B and interleaved, Megatron's
// figure); in_flight[s] the most micro-batch chunks stage s holds at once.
struct PipelineBubble {
  double bubble_fraction = 0;
  double overhead = 0;
  std::vector<int> in_flight;
};
absl::StatusOr<PipelineBubble> SchedulePipelineBubble(PipelineScheduleKind kind,
                                                      const PipelineShape& shape);

// A text Gantt chart: one row per stage, one cell per `quantum` of time holding the compute
// running then ("F3", "B3", "F3.1" with chunks; "." idle), followed by a table of the per-stage
// figures and the pipeline's bubble fraction. Starts and ends are rounded to whole cells, so
// durations that are not multiples of `quantum` show approximately.
std::string FormatTimeline(const PipelineSchedule& schedule, const PipelineShape& shape,
                           const PipelineSimulation& sim, double quantum);

}  // namespace loom
