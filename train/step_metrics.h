// The trainer's clock and progress line: step times, tokens, the communication seconds of each
// kind (tensor-, sequence-, data-parallel exposed and in flight, pipeline exchanges) summed over
// a logging interval, and the metrics record (StepMetrics, metrics/metrics.h) with the console
// lines made from them. The trainer adds what each step measured and asks for a record on the
// steps that log; nothing else keeps these counters.
#pragma once

#include <cstdint>
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

  // The record of the interval ending at `step` (loss, lr, ... filled by the caller's values),
  // and the console lines to print (the progress line, and the communication line of a
  // parallel run); starts the next interval.
  struct Report {
    StepMetrics metrics;
    std::vector<std::string> lines;
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
};

}  // namespace loom
