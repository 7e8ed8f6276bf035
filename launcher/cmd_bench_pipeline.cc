// `loom bench pipeline --config F [--set ...] [--steps N] [--warmup N] [--recompute LIST]
// [--schedules LIST]`, under mpirun with the job's layout (parallel.pp > 1): trains the job for
// warmup + steps steps once per schedule (default: the job's) and recomputation mode and prints,
// per pipeline stage, the time in forward, backward, pipeline exchanges (transfers plus waiting for
// a neighbour) and the rest of the step (gradient reduction, optimizer), the measured bubble beside
// the schedule's formula, and the activation memory each stage held at its peak.
//
// The measured bubble of a stage is the share of its pipeline phase (forward + backward +
// exchanges) spent in exchanges: with compute-bound stages that is the idle time the schedule
// leaves, plus the transfers themselves. The formula is the ideal one for uniform stages with
// backward = 2 x forward: (p - 1) / (m + p - 1) for GPipe and 1F1B, (p - 1) / (v m + p - 1)
// interleaved; for ZERO_BUBBLE the simulator's figure with B = W = forward. With several
// schedules a side-by-side table follows: ms/step, simulated and measured bubble (mean over the
// stages), peak activation memory (the largest stage's).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "job/config.h"
#include "launcher/command.h"
#include "parallel/pipeline_simulator.h"
#include "parallel/world.h"
#include "runtime/status.h"
#include "runtime/timer.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Trains the job (parallel.pp > 1) for warmup + steps steps per recomputation mode and\n"
    "prints per pipeline stage: forward, backward, exchange and other ms per step, the\n"
    "measured bubble beside the formula's, and the peak activation memory. --schedules\n"
    "1f1b,zero_bubble runs the same job under each and prints them side by side.";

// Per stage, what the bench prints (summed over the ranks of a stage with tp = dp = 0 only).
enum Field { kForward, kBackward, kExchange, kStep, kActBytes, kSlots, kWeight, kFields };

absl::StatusOr<ParallelConfig::Schedule> ParseSchedule(const std::string& s) {
  for (ParallelConfig::Schedule k : {ParallelConfig::ONE_F_ONE_B, ParallelConfig::GPIPE,
                                     ParallelConfig::INTERLEAVED, ParallelConfig::ZERO_BUBBLE}) {
    if (s == PipelineScheduleName(PipelineScheduleFromConfig(k))) return k;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", s, "' is not one of 1f1b, gpipe, interleaved, zero_bubble"));
}

// One (schedule, recomputation) run, for the side-by-side table.
struct Row {
  std::string schedule, recompute;
  double ms_per_step = 0, simulated = 0, measured = 0, peak_act_mib = 0;
};

absl::StatusOr<ParallelConfig::Recompute> ParseRecompute(const std::string& s) {
  if (s == "none") return ParallelConfig::NONE;
  if (s == "selective") return ParallelConfig::SELECTIVE;
  if (s == "full") return ParallelConfig::FULL;
  return absl::InvalidArgumentError(absl::StrCat("'", s, "' is not one of none, selective, full"));
}

absl::Status RunBenchPipeline(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> overrides;
  int steps = 4, warmup = 1;
  std::vector<ParallelConfig::Recompute> modes;
  FlagSet flags("mpirun -np N loom bench pipeline", kDescription);
  flags.JobFlags(&path, &overrides);
  flags.Int("--steps", &steps, "N", "timed steps per mode").AtLeast(1);
  flags.Int("--warmup", &warmup, "N", "untimed steps first").AtLeast(0);
  flags
      .Custom("--recompute", "LIST", "recomputation modes to compare, of none, selective, full",
              [&](absl::string_view list) -> absl::Status {
                modes.clear();
                for (absl::string_view m : absl::StrSplit(list, ',')) {
                  LOOM_ASSIGN_OR_RETURN(auto r, ParseRecompute(std::string(m)));
                  modes.push_back(r);
                }
                return absl::OkStatus();
              })
      .DefaultText("none,full");
  std::vector<ParallelConfig::Schedule> schedules;
  flags
      .Custom("--schedules", "LIST",
              "pipeline schedules to compare on the same job, of 1f1b, gpipe, interleaved, "
              "zero_bubble",
              [&](absl::string_view list) -> absl::Status {
                schedules.clear();
                for (absl::string_view k : absl::StrSplit(list, ',')) {
                  LOOM_ASSIGN_OR_RETURN(auto kind, ParseSchedule(std::string(k)));
                  schedules.push_back(kind);
                }
                return absl::OkStatus();
              })
      .DefaultText("the job's");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  if (!flags.Given("--recompute")) modes = {ParallelConfig::NONE, ParallelConfig::FULL};
  steps = std::max(1, steps);
  LOOM_ASSIGN_OR_RETURN(JobConfig config, LoadJobConfig(path, overrides));
  LOOM_ASSIGN_OR_RETURN(World * world, World::Get());
  LOOM_ASSIGN_OR_RETURN(JobLayout n, JobLayout::Create(config, world->size()));
  if (n.pp < 2) {
    return absl::InvalidArgumentError(absl::StrCat("bench pipeline needs parallel.pp > 1 (got ",
                                                   n.pp,
                                                   "): run it under mpirun with the "
                                                   "pipeline layout to measure"));
  }
  // The bench runs whole steps; no saving, sampling or evaluation in between.
  config.mutable_logging()->set_interval(1 << 30);
  config.mutable_logging()->set_eval_interval(0);
  config.mutable_logging()->set_sample_interval(0);
  config.mutable_logging()->clear_run_dir();
  config.mutable_lr_schedule()->set_total_steps(
      std::max<int64_t>(config.lr_schedule().total_steps(), warmup + steps));
  const int p = n.pp, m = static_cast<int>(n.grad_accum_steps), v = n.virtual_stages;
  if (!flags.Given("--schedules")) schedules = {config.parallel().schedule()};
  const bool print = world->rank() == 0;
  std::vector<Row> rows;
  for (ParallelConfig::Schedule kind : schedules) {
    config.mutable_parallel()->set_schedule(kind);
    LOOM_ASSIGN_OR_RETURN(JobLayout layout, JobLayout::Create(config, world->size()));
    // The schedule's own bubble for uniform stages, from the pipeline simulator.
    LOOM_ASSIGN_OR_RETURN(PipelineBubble ideal,
                          SchedulePipelineBubble(layout.schedule, layout.pipeline_shape()));
    const double formula = ideal.bubble_fraction;
    if (print) {
      std::printf(
          "bench pipeline: %d ranks, dp %d x tp %d x pp %d, %d virtual stage(s), %d "
          "micro-batches of %d x %d, schedule %s\n",
          world->size(), n.dp, n.tp, p, v, m, config.parallel().micro_batch_size(),
          config.data().seq_len(), PipelineScheduleName(layout.schedule));
    }
    for (ParallelConfig::Recompute mode : modes) {
      JobConfig job = config;
      job.mutable_parallel()->set_recompute(mode);
      LOOM_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(job, world));
      for (int i = 0; i < warmup; ++i) LOOM_RETURN_IF_ERROR(trainer->Step().status());
      (void)trainer->pipeline()->TakeTimes();
      LOOM_RETURN_IF_ERROR(trainer->model().device()->Synchronize());
      double step_s = 0;
      for (int i = 0; i < steps; ++i) {
        Timer timer;
        LOOM_RETURN_IF_ERROR(trainer->Step().status());
        LOOM_RETURN_IF_ERROR(trainer->model().device()->Synchronize());
        step_s += timer.Seconds();
      }
      const PipelineRunner::Times t = trainer->pipeline()->TakeTimes();
      const GridCoord& c = trainer->groups().coord();
      std::vector<double> stats(static_cast<size_t>(p) * kFields, 0.0);
      if (c.tp == 0 && c.dp == 0) {
        double* s = &stats[static_cast<size_t>(c.pp) * kFields];
        s[kForward] = t.forward_s / steps;
        s[kBackward] = (t.backward_s + t.weight_s) / steps;
        s[kWeight] = t.weight_s / steps;
        s[kExchange] = t.exchange_s / steps;
        s[kStep] = step_s / steps;
        s[kActBytes] = static_cast<double>(trainer->model().activation_bytes());
        s[kSlots] = trainer->model().slots_allocated();
      }
      LOOM_RETURN_IF_ERROR(world->comm().AllReduceHost(absl::MakeSpan(stats), ReduceOp::kSum));
      if (!print) continue;
      double slowest = 0;
      for (int s = 0; s < p; ++s) slowest = std::max(slowest, stats[s * kFields + kStep]);
      std::printf("\nrecompute %s: %.1f ms/step, %.0f tokens/s\n",
                  RecomputeName(trainer->model().recompute()), slowest * 1e3,
                  n.tokens_per_step / slowest);
      std::printf(
          "  stage  forward ms  backward ms  exchange ms  other ms  bubble  formula  "
          "activations MiB (slots)  of backward, W ms\n");
      Row row{PipelineScheduleName(layout.schedule), RecomputeName(trainer->model().recompute()),
              slowest * 1e3, formula};
      for (int s = 0; s < p; ++s) {
        const double* x = &stats[s * kFields];
        const double phase = x[kForward] + x[kBackward] + x[kExchange];
        const double bubble = phase > 0 ? x[kExchange] / phase : 0.0;
        std::printf("  %5d  %10.1f  %11.1f  %11.1f  %8.1f  %5.1f%%  %6.1f%%  %10.2f (%d)  %10.1f\n",
                    s, x[kForward] * 1e3, x[kBackward] * 1e3, x[kExchange] * 1e3,
                    (x[kStep] - phase) * 1e3, 100.0 * bubble, 100.0 * formula,
                    x[kActBytes] / 1048576.0, static_cast<int>(x[kSlots]), x[kWeight] * 1e3);
        row.measured += bubble / p;
        row.peak_act_mib = std::max(row.peak_act_mib, x[kActBytes] / 1048576.0);
      }
      rows.push_back(row);
    }
  }
  if (print && schedules.size() > 1) {
    std::printf("\nside by side (pp %d, %d micro-batches):\n", p, m);
    std::printf("  %-12s %-10s %9s %10s %9s %16s\n", "schedule", "recompute", "ms/step",
                "simulated", "measured", "peak act MiB");
    for (const Row& r : rows) {
      std::printf("  %-12s %-10s %9.1f %9.1f%% %8.1f%% %16.2f\n", r.schedule.c_str(),
                  r.recompute.c_str(), r.ms_per_step, 100.0 * r.simulated, 100.0 * r.measured,
                  r.peak_act_mib);
    }
  }
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_pipeline, "bench pipeline",
                      "per-stage forward/backward/exchange time, bubble and activation memory",
                      RunBenchPipeline);

}  // namespace loom
