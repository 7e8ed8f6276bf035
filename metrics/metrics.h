// Training metrics as a user sees them: one console line per logged step and one JSON object
// per logged step in <run dir>/metrics.jsonl.
//
// JSON floats are written with 9 significant digits ("%.9g"), enough for every float32 value to
// read back bit for bit; a non-finite value (a diverged loss) is written as null, since JSON has
// no NaN. Each line goes to the kernel whole or not at all (metrics/append_file.h), so neither a
// crash nor a full disk leaves half a line. A resumed run opens the file for resume: lines of steps
// after the resume step (logged after the checkpoint the run restarts from) are dropped, so each
// step appears once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "metrics/append_file.h"

namespace loom {

struct StepMetrics {
  int64_t step = 0;                // 1-based number of the optimizer step just finished
  double loss = 0;                 // mean training loss over the global batch
  double lr = 0;                   // learning rate used for this step
  double grad_norm = 0;            // global gradient norm before clipping
  double tokens_per_s = 0;         // training throughput over the last logging interval
  std::optional<double> mfu;       // model FLOPs utilisation in [0, 1]; unset where unknown (CPU)
  int64_t peak_bytes = 0;          // peak device memory held by the allocator
  std::optional<double> val_loss;  // set on the steps where validation ran
  int64_t skipped_steps = 0;       // steps skipped so far for a non-finite loss or gradient norm
  std::optional<double> comm_share;  // share of the step in exposed communication (parallel runs)
};

// "step   10/100 | loss 3.123456 | lr 3.00e-04 | norm 1.23 | 12.3k tok/s | mfu 45.6% |
//  mem 1.2 GiB | 0:00:12 / eta 0:01:48" (one line), with "| val 3.012345" after the loss on
// validation steps and "| skipped N" after the memory once steps were skipped. `elapsed_s` is the wall time since the run (or resume) started; the ETA is
// extrapolated by the caller and omitted when negative.
std::string FormatConsoleLine(const StepMetrics& m, int64_t total_steps, double elapsed_s,
                              double eta_s);

// "12.3k", "4.56M", "987": three significant digits with a k/M/G suffix.
std::string FormatCount(double v);
// "812 MiB", "1.2 GiB" (bytes below 1 GiB in MiB).
std::string FormatBytes(int64_t bytes);
// "H:MM:SS" (hours unbounded); negative durations print as "-".
std::string FormatDuration(double seconds);
// "%.9g", or "null" for NaN / infinity.
std::string JsonNumber(double v);

// The JSON object for one step: {"step":10,"loss":...,"lr":...,"grad_norm":...,
// "tokens_per_s":...,"mfu":...,"comm_share":...,"skipped_steps":...,"peak_bytes":...,
// "val_loss":...} (mfu, comm_share and val_loss only when set, skipped_steps only when > 0),
// without a trailing newline.
std::string FormatJsonLine(const StepMetrics& m);

// The scalars TensorBoard shows for a step, by tag: train/loss, train/lr, train/grad_norm,
// train/tokens_per_s, train/mfu (when known), train/peak_memory_gib, val/loss (when set).
std::vector<std::pair<std::string, float>> TensorBoardScalars(const StepMetrics& m);

class MetricsLogger {
 public:
  // Starts <run_dir>/metrics.jsonl afresh (creating run_dir), replacing any earlier file.
  static absl::StatusOr<std::unique_ptr<MetricsLogger>> Create(const std::string& run_dir);
  // Continues <run_dir>/metrics.jsonl for a run resumed after `resume_step`: keeps the lines of
  // steps <= resume_step and drops later ones. A missing file is started afresh.
  static absl::StatusOr<std::unique_ptr<MetricsLogger>> OpenForResume(const std::string& run_dir,
                                                                      int64_t resume_step);
  MetricsLogger(const MetricsLogger&) = delete;
  MetricsLogger& operator=(const MetricsLogger&) = delete;

  // Appends one line, whole or not at all.
  absl::Status Log(const StepMetrics& m);
  const std::string& path() const { return file_->path(); }

 private:
  explicit MetricsLogger(std::unique_ptr<AppendFile> file) : file_(std::move(file)) {}
  std::unique_ptr<AppendFile> file_;
};

}  // namespace loom
