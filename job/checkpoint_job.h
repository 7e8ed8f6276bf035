// What a job's checkpoint fields mean before anything is built, shared by `loom config check`,
// the trainer and the tools:
// - ResumeSource: the step directory the job resumes from (checkpoint.resume: NONE = none;
//   AUTO = <checkpoint.dir>/latest if there is one; a path = that step directory, or the one a
//   checkpoint root's `latest` names). A resume path that does not exist or holds no complete
//   checkpoint is an error naming it, reported before anything is written.
// - The data position in layout-free terms and back: a data-parallel rank's (epoch, index)
//   becomes (epoch, samples of the epoch's global order consumed = index * dp), and that is
//   converted for another dp only when it divides exactly.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "data/data_loader.h"
#include "proto/checkpoint.pb.h"
#include "proto/job.pb.h"

namespace loom {

absl::StatusOr<std::optional<std::string>> ResumeSource(const JobConfig& job);

CheckpointDataPosition DataPositionOf(const DataLoaderState& state, int dp);
absl::StatusOr<DataLoaderState> DataStateFor(const CheckpointDataPosition& position, int dp,
                                             const std::string& checkpoint);

}  // namespace loom
