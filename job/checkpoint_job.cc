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
  std::vector<std::string> diffs;
  auto cmp = [&](const char* field, auto mine, auto theirs) {
    if (mine != theirs) {
      diffs.push_back(absl::StrCat(field, ": the job has ", mine, ", the checkpoint ", theirs));
    }
  };
  cmp("model.family", a.is_llama() ? "LLAMA" : "GPT2", b.is_llama() ? "LLAMA" : "GPT2");
  cmp("model.layers", a.layers, b.layers);
  cmp("model.heads", a.heads, b.heads);
  cmp("model.kv_heads", a.kv_heads, b.kv_heads);
  cmp("model.hidden", a.hidden, b.hidden);
  cmp("model.ffn_hidden", a.ffn_hidden, b.ffn_hidden);
  cmp("model.vocab", a.vocab, b.vocab);
  cmp("model.max_seq", a.max_seq, b.max_seq);
  cmp("model.tied_embeddings", a.tied_embeddings, b.tied_embeddings);
  cmp("model.norm_eps", a.norm_eps, b.norm_eps);
  // RoPE's base only matters where there is RoPE.
  if (a.is_llama() && b.is_llama()) cmp("model.rope_theta", a.rope_theta, b.rope_theta);
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
