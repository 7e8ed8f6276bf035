// What a job's checkpoint fields mean before anything is built, shared by `loom config check`,
// the trainer and the tools:
// - ResumeSource: the step directory the job resumes from (checkpoint.resume: NONE = none;
//   AUTO = <checkpoint.dir>/latest if there is one; a path = that step directory, or the one a
//   checkpoint root's `latest` names). A resume path that does not exist or holds no complete
//   checkpoint is an error naming it, reported before anything is written.
// - CheckSameModel: a checkpoint loads only into the model it was saved from.
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

// The model the checkpoint at `step_dir` was saved from (its manifest's job, defaults applied)
// must be the job's model: every field that changes what the model computes is compared
// (family, layers, heads, kv_heads, hidden, ffn_hidden, vocab, max_seq, tied_embeddings,
// norm_eps, rope_theta), including those the tensor shapes do not show (heads, norm_eps,
// rope_theta, a vocabulary that pads to the same rows). model.vocab_pad_multiple only pads and
// model.init_from only says where weights came from: they may differ. The error names every
// differing field with both values and the manifest.
absl::Status CheckSameModel(const CheckpointManifest& saved, const JobConfig& job,
                            const std::string& step_dir);

CheckpointDataPosition DataPositionOf(const DataLoaderState& state, int dp);
absl::StatusOr<DataLoaderState> DataStateFor(const CheckpointDataPosition& position, int dp,
                                             const std::string& checkpoint);

}  // namespace loom
