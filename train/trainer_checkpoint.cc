// The trainer's checkpoint hooks: saving the model state of this rank (checkpoint/), resuming
// from a step directory of any layout, and model.init_from a step directory (weights only).
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "job/checkpoint_job.h"
#include "model/gpt_params.h"
#include "runtime/logging.h"
#include "runtime/status.h"
#include "train/trainer.h"

namespace loom {

OptimizerView Trainer::OptimizerPlan() const {
  OptimizerView o;
  o.owned = optimizer_->owned_ranges();
  o.sharded = optimizer_->sharded();
  o.separate_master = model_->params().dtype() != DType::kF32;
  return o;
}

absl::Status Trainer::SaveCheckpoint() {
  if (!saver_) {
    return absl::FailedPreconditionError("SaveCheckpoint: checkpoint.dir is empty");
  }
  CheckpointSources src;
  src.table = &model_->layout();
  src.coord = groups_->coord();
  src.dp_size = numbers_.dp;
  src.optimizer = OptimizerPlan();
  src.params = model_->params();
  if (src.optimizer.separate_master) src.master = optimizer_->master();
  src.m = optimizer_->adamw().m();
  src.v = optimizer_->adamw().v();
  CheckpointInfo info;
  info.step = step_;
  info.tokens_seen = step_ * numbers_.tokens_per_step;
  info.job = config_;
  CheckpointLayout& l = info.layout;
  l.set_world_size(world_->size());
  l.set_tp(numbers_.tp);
  l.set_dp(numbers_.dp);
  l.set_pp(numbers_.pp);
  l.set_virtual_stages(numbers_.virtual_stages);
  l.set_distributed_optimizer(optimizer_->sharded());
  l.set_weights_dtype(std::string(DTypeName(model_->params().dtype())));
  // The position of the batches used, not of a step prefetched (train/step_batches.h).
  info.data = DataPositionOf(batches_->consumed_position(), numbers_.dp);
  info.run_id = run_id_;
  LOOM_ASSIGN_OR_RETURN(auto stats, saver_->Save(src, info, config_.checkpoint().async()));
  (void)stats;  // logged by the saver
  last_saved_step_ = step_;
  return absl::OkStatus();
}

absl::Status Trainer::FinishCheckpoint() {
  if (!saver_) return absl::OkStatus();
  return saver_->Finish().status();
}

absl::Status Trainer::CheckpointAfterStep() {
  if (!saver_) return absl::OkStatus();
  const int64_t interval = config_.checkpoint().interval();
  // The last step of the run is saved by CheckpointAtStop.
  if (interval > 0 && step_ % interval == 0 && step_ < numbers_.steps_this_run) {
    return SaveCheckpoint();
  }
  if (saver_->pending()) return saver_->Poll().status();
  return absl::OkStatus();
}

absl::Status Trainer::CheckpointAtStop() {
  if (!saver_) return absl::OkStatus();
  if (last_saved_step_ != step_) LOOM_RETURN_IF_ERROR(SaveCheckpoint());
  return FinishCheckpoint();
}

absl::Status Trainer::LoadCheckpoint(const std::string& step_dir, bool weights_only) {
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader, CheckpointReader::Open(step_dir));
  const CheckpointManifest& m = reader->manifest();
  // Shapes alone do not tell models apart (heads, norm_eps, a vocabulary padding hides).
  LOOM_RETURN_IF_ERROR(CheckSameModel(m, config_, step_dir));
  // The whole model must be the one saved: the same parameter names (this rank's table may be
  // one pipeline stage, so the names come from the model's description), then the shapes.
  {
    std::set<std::string> want, got;
    for (const ParamDesc& d : GptParamDescs(model_->config())) {
      if (!d.tied_copy) want.insert(d.name);
    }
    for (const CheckpointTensor& t : m.tensors()) got.insert(t.name());
    std::vector<std::string> missing, extra;
    for (const std::string& n : want) {
      if (!got.count(n)) missing.push_back(n);
    }
    for (const std::string& n : got) {
      if (!want.count(n)) extra.push_back(n);
    }
    if (!missing.empty() || !extra.empty()) {
      std::vector<std::string> why;
      if (!missing.empty()) why.push_back(absl::StrCat("it lacks ", absl::StrJoin(missing, ", ")));
      if (!extra.empty()) {
        why.push_back(
            absl::StrCat("it has tensors this model lacks: ", absl::StrJoin(extra, ", ")));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", step_dir, "/manifest.pb is of another model: ", absl::StrJoin(why, "; ")));
    }
  }
  const ParamTable& table = model_->layout();
  const OptimizerView plan = OptimizerPlan();
  std::vector<float> weights(table.total()), master, mom_m, mom_v;
  if (!weights_only) {
    const int64_t n = optimizer_->adamw().size();
    mom_m.resize(n);
    mom_v.resize(n);
    if (plan.separate_master) master.resize(n);
  }
  LOOM_RETURN_IF_ERROR(reader->Load(table, plan, !weights_only, weights.data(), master.data(),
                                    mom_m.data(), mom_v.data()));
  LOOM_ASSIGN_OR_RETURN(Tensor full, Tensor::Empty(Shape{table.total()}, DType::kF32, device_));
  LOOM_RETURN_IF_ERROR(full.CopyFromFloats(weights));
  LOOM_RETURN_IF_ERROR(optimizer_->LoadWeights(full));
  if (weights_only) {
    LOOM_LOG(INFO) << "model.init_from: weights of step " << m.step() << " from " << step_dir;
    return absl::OkStatus();
  }
  if (plan.separate_master) LOOM_RETURN_IF_ERROR(optimizer_->master().CopyFromFloats(master));
  LOOM_RETURN_IF_ERROR(optimizer_->adamw().m().CopyFromFloats(mom_m));
  LOOM_RETURN_IF_ERROR(optimizer_->adamw().v().CopyFromFloats(mom_v));
  LOOM_ASSIGN_OR_RETURN(DataLoaderState data, DataStateFor(m.data(), numbers_.dp, step_dir));
  LOOM_RETURN_IF_ERROR(train_data_->SetState(data));
  if (m.step() > numbers_.steps_this_run) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", step_dir, " is at step ", m.step(), ", past this run's last step ",
        numbers_.steps_this_run, " (runtime.stop_at_step / lr_schedule.total_steps)"));
  }
  step_ = m.step();
  last_saved_step_ = step_;
  resumed_from_ = step_dir;
  run_id_ = m.run_id();
  // Logged by RestoreCheckpoint once every rank has loaded its part.
  const CheckpointLayout& l = m.layout();
  resumed_note_ = absl::StrCat("resumed from ", step_dir, " at step ", step_, " (saved by dp ",
                               l.dp(), " tp ", l.tp(), " pp ", l.pp(), ", ",
                               l.distributed_optimizer() ? "distributed" : "plain",
                               " optimizer; data epoch ", data.epoch, ", index ", data.index, ")");
  return absl::OkStatus();
}

absl::Status Trainer::RestoreCheckpoint(bool init_from_checkpoint) {
  const CheckpointConfig& k = config_.checkpoint();
  if (!k.dir().empty()) {
    saver_ = std::make_unique<CheckpointSaver>(k.dir(), k.keep_last(), &world_->comm());
  }
  const absl::Status mine = [&]() -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(std::optional<std::string> source, ResumeSource(config_));
    if (source) return LoadCheckpoint(*source, /*weights_only=*/false);
    if (init_from_checkpoint) {
      LOOM_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(config_.model().init_from()));
      auto s = LoadCheckpoint(dir, /*weights_only=*/true);
      if (!s.ok()) return absl::Status(s.code(), absl::StrCat("model.init_from: ", s.message()));
    }
    return absl::OkStatus();
  }();
  // Each rank reads only the slices it needs, so one may fail (a corrupt file only it reads)
  // while the others would wait for it in the first step: every rank returns an error then.
  double failed[2] = {mine.ok() ? 0.0 : 1.0, mine.ok() ? -1.0 : world_->rank()};
  LOOM_RETURN_IF_ERROR(world_->comm().AllReduceHost(absl::MakeSpan(failed, 1), ReduceOp::kSum));
  LOOM_RETURN_IF_ERROR(world_->comm().AllReduceHost(absl::MakeSpan(failed + 1, 1), ReduceOp::kMax));
  if (!mine.ok()) return mine;
  if (failed[0] > 0) {
    return absl::AbortedError(absl::StrCat("loading the checkpoint failed on ",
                                           static_cast<int>(failed[0]), " rank(s), e.g. rank ",
                                           static_cast<int>(failed[1]), " (see its message)"));
  }
  // Only now, with every rank's part loaded and checked.
  if (!resumed_note_.empty()) LOOM_LOG(INFO) << resumed_note_;
  return absl::OkStatus();
}

}  // namespace loom
