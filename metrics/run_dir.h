// The metrics sinks of one run directory (metrics.jsonl and a TensorBoard event file) as the
// trainer uses them:
// - A fresh run never writes over an earlier run's record: Open refuses a run_dir that already
//   holds metrics unless told to overwrite (then those files are deleted first). A resumed run
//   continues metrics.jsonl after dropping the lines of steps beyond the resume step, and adds a
//   TensorBoard file beside the old ones - but only the run that wrote them: each run has an id
//   (in its checkpoints, and in <run_dir>/run_id), and a resume whose id differs from the run
//   dir's is refused like a fresh run (an unrelated checkpoint would cut another run's steps).
// - Metrics are never worth a run: when a sink fails to write (a full disk, a lost mount) the
//   failure is logged once, that sink is switched off and Log carries on with the others.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "metrics/metrics.h"
#include "metrics/tensorboard.h"

namespace loom {

struct RunDirOptions {
  bool jsonl = true;
  bool tensorboard = true;
  bool overwrite = false;              // delete an earlier run's metrics instead of refusing
  std::optional<int64_t> resume_step;  // set when the run resumes after this step
  std::string run_id;                  // written to <run_dir>/run_id; see the file comment
};

// A new run id: "<UTC time>-<host>-<pid>", unique enough to tell two runs apart.
std::string NewRunId();

// Why the run `run_id`, resuming, may not continue the metrics in `run_dir` (they are another
// run's, or of a run without an id while this one has one), or empty.
std::string RunDirOfAnotherRunProblem(const std::string& run_dir, const std::string& run_id);

// The files in `run_dir` that hold an earlier run's metrics: a non-empty metrics.jsonl and
// every events.out.tfevents.* file, sorted. Empty when the directory does not exist.
std::vector<std::string> ExistingMetricsFiles(const std::string& run_dir);

// Why a fresh run may not use `run_dir` ("logging.run_dir runs/x already holds ..."), or empty.
std::string RunDirInUseProblem(const std::string& run_dir);

class MetricsSinks {
 public:
  // Errors: the run_dir holds metrics (fresh run without overwrite), or a file cannot be
  // created, named.
  static absl::StatusOr<std::unique_ptr<MetricsSinks>> Open(const std::string& run_dir,
                                                            const RunDirOptions& options);
  // Writes the step to every working sink. Never fails: see the file comment.
  void Log(const StepMetrics& m);

  bool jsonl_active() const { return jsonl_ != nullptr; }
  bool tensorboard_active() const { return tensorboard_ != nullptr; }

 private:
  MetricsSinks() = default;
  std::unique_ptr<MetricsLogger> jsonl_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

}  // namespace loom
