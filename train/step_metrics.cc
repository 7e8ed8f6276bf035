#include "train/step_metrics.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"

namespace loom {

CommSeconds& CommSeconds::operator+=(const CommSeconds& o) {
  tp += o.tp;
  sp += o.sp;
  dp_exposed += o.dp_exposed;
  dp_total += o.dp_total;
  pp += o.pp;
  return *this;
}

StepProgress::StepProgress(int64_t tokens_per_step, double flops_per_token, double peak_flops,
                           bool parallel, bool show_comm_share)
    : tokens_per_step_(tokens_per_step),
      flops_per_token_(flops_per_token),
      peak_flops_(peak_flops),
      parallel_(parallel),
      show_comm_share_(show_comm_share) {}

void StepProgress::AddStep(double seconds, const CommSeconds& comm) {
  elapsed_s_ += seconds;
  ++steps_timed_;
  interval_s_ += seconds;
  ++interval_steps_;
  interval_tokens_ += tokens_per_step_;
  interval_comm_ += comm;
}

void StepProgress::AddDeviceComm(const std::map<std::string, double>& group_seconds,
                                 double dp_exposed_s) {
  device_times_ = true;
  for (const auto& [group, seconds] : group_seconds) interval_device_[group] += seconds;
  interval_device_["dp exposed"] += dp_exposed_s;
  interval_device_exposed_ += dp_exposed_s;
  for (const auto& [group, seconds] : group_seconds) {
    if (group != "dp" && group != "pp" && group != "embedding") interval_device_exposed_ += seconds;
  }
}

StepProgress::Report StepProgress::Flush(int64_t step, int64_t total_steps, double loss, double lr,
                                         double grad_norm, int64_t peak_bytes,
                                         int64_t skipped_steps, std::optional<float> val_loss) {
  Report r;
  StepMetrics& m = r.metrics;
  m.step = step;
  m.loss = loss;
  m.lr = lr;
  m.grad_norm = grad_norm;
  m.tokens_per_s = interval_s_ > 0 ? interval_tokens_ / interval_s_ : 0;
  const double achieved = m.tokens_per_s * flops_per_token_;
  std::string peak_note;
  if (peak_flops_ > 0 && achieved > peak_flops_) {
    // More than the peak: the peak (a CPU's measured sgemm rate, cached) was measured while the
    // machine was busy. MFU is then counted against what this interval achieved (100%), from
    // now on, and the line says so: never an MFU above 100%, never silently.
    peak_note = absl::StrFormat(
        "MFU: this interval ran at %.4g FLOP/s, above the GEMM peak it is counted against "
        "(%.4g FLOP/s, measured while the machine was busy?); counting MFU against %.4g FLOP/s "
        "from now on",
        achieved, peak_flops_, achieved);
    peak_flops_ = achieved;
    r.raised_peak_flops = achieved;
  }
  if (peak_flops_ > 0) m.mfu = achieved / peak_flops_;
  m.peak_bytes = peak_bytes;
  m.skipped_steps = skipped_steps;
  if (val_loss) m.val_loss = *val_loss;
  const CommSeconds& c = interval_comm_;
  if (show_comm_share_ && interval_s_ > 0) {
    m.comm_share = device_times_ ? std::min(1.0, interval_device_exposed_ / interval_s_)
                                 : (c.tp + c.sp + c.dp_exposed) / interval_s_;
  }
  const double eta = elapsed_s_ / std::max<int64_t>(1, step) * (total_steps - step);
  r.lines.push_back(FormatConsoleLine(m, total_steps, elapsed_s_, eta));
  if (parallel_) {
    const double per = 1e3 / std::max<int64_t>(1, interval_steps_);
    const double comm = c.tp + c.sp + c.dp_exposed + c.pp;
    r.lines.push_back(absl::StrFormat(
        "communication per step: tensor-parallel %.1f ms, sequence-parallel %.1f ms, "
        "data-parallel %.1f ms exposed of %.1f ms in flight, pipeline %.1f ms (%.0f%% of the "
        "step)",
        c.tp * per, c.sp * per, c.dp_exposed * per, c.dp_total * per, c.pp * per,
        interval_s_ > 0 ? 100.0 * comm / interval_s_ : 0.0));
  }
  if (!peak_note.empty()) r.lines.push_back(std::move(peak_note));
  interval_s_ = 0;
  interval_steps_ = 0;
  interval_tokens_ = 0;
  interval_comm_ = CommSeconds{};
  r.device_seconds = std::exchange(interval_device_, {});
  interval_device_exposed_ = 0;
  return r;
}

}  // namespace loom
