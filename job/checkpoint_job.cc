#include "job/checkpoint_job.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "job/config_defaults.h"
#include "job/job_layout.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<std::optional<std::string>> ResumeSource(const JobConfig& job) {
  const CheckpointConfig& k = job.checkpoint();
  if (k.resume() == "NONE") return std::optional<std::string>();
  if (k.resume().empty() || k.resume() == "AUTO") {
    if (k.dir().empty()) return std::optional<std::string>();
    auto latest = LatestCheckpoint(k.dir());
    if (!latest.ok()) {
      return absl::Status(latest.status().code(),
                          absl::StrCat("checkpoint.resume AUTO: ", latest.status().message()));
    }
    return *latest;
  }
  auto dir = ResolveCheckpoint(k.resume());
  if (!dir.ok()) {
    return absl::Status(dir.status().code(),
                        absl::StrCat("checkpoint.resume: ", dir.status().message()));
  }
  return std::optional<std::string>(*dir);
}

absl::Status CheckSameModel(const CheckpointManifest& saved, const JobConfig& job,
                            const std::string& step_dir) {
  JobConfig saved_job = saved.job();
  ApplyDefaults(&saved_job);  // a field the saving build left unset reads as its default
  const GptConfig a = GptConfigFromJob(job), b = GptConfigFromJob(saved_job);
  const std::vector<std::string> diffs = GptConfigDifferences(
      a, b, "the job has", "the checkpoint", /*with_padding=*/false, /*with_numerics=*/true);
  if (diffs.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "checkpoint ", step_dir, "/manifest.pb is of another model: ", absl::StrJoin(diffs, "; ")));
}

CheckpointDataPosition DataPositionOf(const DataLoaderState& state, int dp) {
  CheckpointDataPosition p;
  p.set_epoch(state.epoch);
  p.set_samples_consumed(state.index * dp);
  return p;
}

absl::StatusOr<DataLoaderState> DataStateFor(const CheckpointDataPosition& position, int dp,
                                             const std::string& checkpoint) {
  if (dp < 1 || position.samples_consumed() % dp != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", checkpoint, ": the data position (", position.samples_consumed(),
        " samples of epoch ", position.epoch(), ") cannot be split exactly over ", dp,
        " data-parallel ranks; resume with a data-parallel size that divides it"));
  }
  DataLoaderState s;
  s.epoch = position.epoch();
  s.index = position.samples_consumed() / dp;
  return s;
}

}  // namespace loom
