// The trainer's clock and progress line: step times, tokens, the communication seconds of each
// kind (tensor-, sequence-, data-parallel exposed and in flight, pipeline exchanges) summed over
// a logging interval, and the metrics record (StepMetrics, metrics/metrics.h) with the console
// lines made from them. The trainer adds what each step measured and asks for a record on the
// steps that log; nothing else keeps these counters.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "metrics/metrics.h"

namespace loom {

// Seconds a step spent communicating, by kind.
struct CommSeconds {
  double tp = 0;          // tensor-parallel all-reduces of activations
  double sp = 0;          // sequence-parallel gathers and reduce-scatters
  double dp_exposed = 0;  // the data-parallel reduction's part that backward did not hide
  double dp_total = 0;    // the data-parallel reduction in flight
  double pp = 0;          // blocked in pipeline exchanges (transfers and waits for a neighbour)
  CommSeconds& operator+=(const CommSeconds& o);
};

class StepProgress {
 public:
  // `tokens_per_step` and `flops_per_token` price a step; `peak_flops` is the world's GEMM
  // peak (0 = no MFU); `parallel` says whether communication lines are printed.
  StepProgress(int64_t tokens_per_step, double flops_per_token, double peak_flops, bool parallel,
               bool show_comm_share);

  // One step done in `seconds`, having communicated `comm`.
  void AddStep(double seconds, const CommSeconds& comm);
  // Communication measured outside a step's AddStep (the gradient reduction's wait).
  void AddComm(const CommSeconds& comm) { interval_comm_ += comm; }
  // On a device whose collectives run on streams the host's times read ~0 (it never waits for
  // a collective): what the device measured instead, per step. `group_seconds`: each group's
  // collectives on their streams (TakeDeviceCommSeconds); `dp_exposed_s`: the time the ops'
  // stream stood waiting for the data-parallel reduction (timing events around its wait).
  // Once called, comm_share comes from these: the groups whose collectives the ops wait for at
  // once (all but dp, pp and embedding, e.g. tp with sequence parallelism) count whole, the
  // data-parallel reduction by its exposed part, the pipeline's exchanges not at all (as on
  // the host); capped at 1 (streams of two groups may overlap).
  void AddDeviceComm(const std::map<std::string, double>& group_seconds, double dp_exposed_s);

  // The record of the interval ending at `step` (loss, lr, ... filled by the caller's values),
  // and the console lines to print (the progress line, and the communication line of a
  // parallel run); starts the next interval.
  struct Report {
    StepMetrics metrics;
    std::vector<std::string> lines;
    // The interval's device times (AddDeviceComm), per group, and the exposed data-parallel
    // part ("dp exposed"); empty when none were added.
    std::map<std::string, double> device_seconds;
    // > 0: the interval's FLOP rate beat the world's GEMM peak, which was raised to it (a line
    // in `lines` says so; the trainer raises the cached CPU peak, ops/roofline.h).
    double raised_peak_flops = 0;
  };
  Report Flush(int64_t step, int64_t total_steps, double loss, double lr, double grad_norm,
               int64_t peak_bytes, int64_t skipped_steps, std::optional<float> val_loss);

  double elapsed_s() const { return elapsed_s_; }
  int64_t steps_timed() const { return steps_timed_; }
  // Mean seconds of a step so far (0 before the first).
  double mean_step_s() const {
    return steps_timed_ > 0 ? elapsed_s_ / static_cast<double>(steps_timed_) : 0;
  }

 private:
  int64_t tokens_per_step_;
  double flops_per_token_, peak_flops_;
  bool parallel_, show_comm_share_;
  double elapsed_s_ = 0;
  int64_t steps_timed_ = 0;
  double interval_s_ = 0;
  int64_t interval_steps_ = 0, interval_tokens_ = 0;
  CommSeconds interval_comm_;
  bool device_times_ = false;  // AddDeviceComm was called: comm_share from the device's times
  std::map<std::string, double> interval_device_;
  double interval_device_exposed_ = 0;
};

}  // namespace loom
