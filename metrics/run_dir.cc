#include "metrics/run_dir.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/fs.h"
#include "runtime/logging.h"
#include "runtime/status.h"

namespace loom {

std::vector<std::string> ExistingMetricsFiles(const std::string& run_dir) {
  std::vector<std::string> found;
  if (run_dir.empty() || !IsDir(Fs(), run_dir)) return found;
  auto names = Fs().ListDir(run_dir);
  if (!names.ok()) return found;
  for (const std::string& name : *names) {
    const std::string path = absl::StrCat(run_dir, "/", name);
    if (name == "metrics.jsonl") {
      auto info = Fs().Stat(path);
      if (info.ok() && info->is_regular && info->size > 0) found.push_back(path);
    } else if (absl::StartsWith(name, "events.out.tfevents.")) {
      found.push_back(path);
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string RunDirInUseProblem(const std::string& run_dir) {
  const std::vector<std::string> files = ExistingMetricsFiles(run_dir);
  if (files.empty()) return "";
  return absl::StrCat("logging.run_dir ", run_dir, " already holds an earlier run's metrics (",
                      files.front(),
                      files.size() > 1 ? absl::StrCat(" and ", files.size() - 1, " more") : "",
                      "); choose another run_dir, or set logging.overwrite=true (loom train "
                      "--overwrite) to delete them");
}

std::string NewRunId() {
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  return absl::StrCat(absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()), "-",
                      host, "-", ::getpid());
}

namespace {
constexpr char kRunIdFile[] = "run_id";
}  // namespace

std::string RunDirOfAnotherRunProblem(const std::string& run_dir, const std::string& run_id) {
  const std::vector<std::string> files = ExistingMetricsFiles(run_dir);
  if (files.empty()) return "";
  auto text = Fs().ReadFile(absl::StrCat(run_dir, "/", kRunIdFile));
  const std::string theirs =
      text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : std::string();
  if (theirs == run_id) return "";
  return absl::StrCat(
      "logging.run_dir ", run_dir, " holds the metrics of ",
      theirs.empty() ? "a run without a run id" : absl::StrCat("run ", theirs),
      ", but the checkpoint resumed is of ",
      run_id.empty() ? "a run without a run id" : absl::StrCat("run ", run_id),
      ": continuing would cut that run's metrics after the resume step; choose another run_dir, "
      "or set logging.overwrite=true (loom train --overwrite) to replace them");
}

absl::StatusOr<std::unique_ptr<MetricsSinks>> MetricsSinks::Open(const std::string& run_dir,
                                                                 const RunDirOptions& options) {
  std::unique_ptr<MetricsSinks> sinks(new MetricsSinks());
  bool continues = options.resume_step.has_value();
  if (continues) {
    const std::string other = RunDirOfAnotherRunProblem(run_dir, options.run_id);
    if (!other.empty()) {
      if (!options.overwrite) return absl::FailedPreconditionError(other);
      continues = false;  // the other run's metrics are deleted below
    }
  }
  if (!continues) {
    const std::vector<std::string> old = ExistingMetricsFiles(run_dir);
    if (!old.empty() && !options.overwrite) {
      return absl::FailedPreconditionError(RunDirInUseProblem(run_dir));
    }
    for (const std::string& path : old) {
      if (absl::Status removed = Fs().Remove(path); !removed.ok()) {
        return absl::Status(removed.code(),
                            absl::StrCat("logging.overwrite: cannot delete the earlier run's ",
                                         path, ": ", removed.message()));
      }
    }
    if (!old.empty()) {
      LOOM_LOG(INFO) << "logging.overwrite: deleted " << old.size() << " metrics file(s) of an "
                     << "earlier run in " << run_dir;
    }
  }
  if (!options.run_id.empty()) {
    LOOM_RETURN_IF_ERROR(MakeDirs(Fs(), run_dir));
    LOOM_RETURN_IF_ERROR(
        AtomicWriteFile(Fs(), absl::StrCat(run_dir, "/", kRunIdFile), options.run_id + "\n"));
  }
  if (options.jsonl) {
    if (continues) {
      LOOM_ASSIGN_OR_RETURN(sinks->jsonl_,
                            MetricsLogger::OpenForResume(run_dir, *options.resume_step));
    } else {
      LOOM_ASSIGN_OR_RETURN(sinks->jsonl_, MetricsLogger::Create(run_dir));
    }
  }
  if (options.tensorboard) {
    LOOM_ASSIGN_OR_RETURN(sinks->tensorboard_, TensorBoardWriter::Create(run_dir));
  }
  return sinks;
}

void MetricsSinks::Log(const StepMetrics& m) {
  if (jsonl_) {
    absl::Status s = jsonl_->Log(m);
    if (!s.ok()) {
      LOOM_LOG(WARNING) << "metrics.jsonl: " << s.message() << "; step " << m.step
                        << " and later are not written to it (training continues; the file "
                        << "holds every step before, each line whole)";
      jsonl_.reset();
    }
  }
  if (tensorboard_) {
    absl::Status s = tensorboard_->WriteScalars(m.step, TensorBoardScalars(m));
    if (!s.ok()) {
      LOOM_LOG(WARNING) << "TensorBoard: " << s.message() << "; step " << m.step
                        << " and later are not written to it (training continues)";
      tensorboard_.reset();
    }
  }
}

}  // namespace loom
