// Trainer: runs one training job as the config describes it: builds the model on the chosen
// backend (random init from the seed, or model.init_from), opens the token shards, and loops
// over optimizer steps: gradient accumulation to the global batch, data-parallel gradient
// all-reduce, global-norm clipping, AdamW with the LR schedule, metrics to the console,
// metrics.jsonl and TensorBoard, periodic validation loss and text samples.
//
// Everything that can be wrong with the job (config, data, init file, memory) is reported by
// Create, before any large allocation, with the verdict `loom config check` gives
// (job/job_check.h); what this build cannot do yet is listed in NotYetSupported
// (job/config.h). Run stops cleanly at a step boundary on SIGTERM / SIGINT / SIGUSR1
// (train/stop_signal.h), every rank at the same step. With checkpoint.dir it saves
// (trainer_checkpoint.cc, docs/checkpoints.md) on checkpoint.interval, at the end and on a stop,
// and Create resumes per checkpoint.resume.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "checkpoint/checkpoint.h"
#include "data/data_loader.h"
#include "data/tokenizer.h"
#include "job/config.h"
#include "metrics/metrics.h"
#include "metrics/run_dir.h"
#include "model/gpt.h"
#include "model/model_file.h"
#include "model/pipeline_runner.h"
#include "ops/op_stream.h"
#include "parallel/adamw.h"
#include "parallel/distributed_optimizer.h"
#include "parallel/grad_reducer.h"
#include "parallel/process_groups.h"
#include "parallel/world.h"
#include "proto/job.pb.h"
#include "train/fault_injection.h"
#include "train/step_batches.h"
#include "train/step_metrics.h"

namespace loom {

class Trainer {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const JobConfig& config, World* world);

  // Runs from the current step to runtime.stop_at_step (or total_steps), or until a stop signal
  // (checked before each step; then "stopped at step N" is logged and the result is OK).
  absl::Status Run();
  // One optimizer step; returns the mean training loss over the global batch.
  absl::StatusOr<float> Step();
  // Mean validation loss over logging.eval_batches micro-batches per data-parallel rank.
  absl::StatusOr<float> Evaluate();
  // Continues `prompt` by `length` tokens (top-k sampling, k = 40, seeded by (seed, step)).
  absl::StatusOr<std::vector<int32_t>> Sample(const std::vector<int32_t>& prompt, int length);

  // Saves the current step to checkpoint.dir (collective; train/trainer_checkpoint.cc).
  // With checkpoint.async the write continues in the background and a later save, Poll or the
  // end of Run commits it.
  absl::Status SaveCheckpoint();
  // Waits for a background save and commits it (collective); nothing when none is pending.
  absl::Status FinishCheckpoint();
  // The step directory this run resumed from, or empty.
  const std::string& resumed_from() const { return resumed_from_; }
  ModelOptimizer& optimizer() { return *optimizer_; }
  DataLoader& train_data() { return *train_data_; }
  // The training data's position after the batches steps have used (a checkpoint saves it); the
  // loader itself may stand one step further, at a prefetched step.
  DataLoaderState data_position() const { return batches_->consumed_position(); }

  GptModel& model() { return *model_; }
  // This rank's pipeline stage runner (a one-stage pipeline when pp == 1).
  PipelineRunner* pipeline() { return pipeline_.get(); }
  ProcessGroups& groups() { return *groups_; }
  int64_t step() const { return step_; }
  const JobLayout& numbers() const { return numbers_; }
  double last_grad_norm() const { return last_grad_norm_; }
  // Where the model lives (the CPU, a GPU, a test device).
  Device* device() const { return device_; }
  // The most times Step() makes the host wait for the device (Device::host_syncs), whatever
  // the layout and the micro-batches: the one read of the step's losses and gradient norm.
  static constexpr int kHostSyncsPerStep = 1;

 private:
  Trainer() = default;
  // The pieces Create assembles, in its order (train/trainer_build.cc): the train and validation
  // loaders and the tokenizer; the model (with this rank's slices of model.init_from's weights read
  // into `init`, or `init_from_checkpoint` for a step directory) and its pipeline runner; the
  // gradient reducer and the optimizer; the metrics sinks (rank 0 with a run_dir).
  absl::Status BuildData();
  absl::Status BuildModel(std::optional<std::vector<float>>* init, bool* init_from_checkpoint);
  absl::Status BuildOptimizer();
  absl::Status OpenSinks();
  absl::Status FinishGradReduction();
  // On a device, after the step's read-back: its collectives' stream times and the reduction's
  // exposed part go to the progress counters (comm_share; StepProgress::AddDeviceComm).
  absl::Status AccountDeviceComm();
  // The gradient norm's local sum of squares, queued on the device into readback_'s last
  // element; GradNormFrom reduces the host value over the groups and takes the root.
  absl::Status QueueGradNormSquares();
  absl::StatusOr<double> GradNormFrom(double local_squares);
  // The progress line, the communication line and the metrics record, on the steps that log.
  absl::Status LogStep(float loss, std::optional<float> val_loss);
  // Every rank's agreement on stopping at this step boundary: a stop signal on any rank, or the
  // time limit (runtime.max_duration_s) as any rank sees it; sets stop_reason_.
  absl::StatusOr<bool> AnyRankAskedToStop();
  // Checkpoint hooks of Create and Run (trainer_checkpoint.cc): resume per checkpoint.resume,
  // else the weights of a model.init_from step directory; a save on the interval (or a
  // background save committed) after a step; the save at the end or on a stop.
  absl::Status RestoreCheckpoint(bool init_from_checkpoint);
  absl::Status CheckpointAfterStep();
  absl::Status CheckpointAtStop();
  absl::Status LoadCheckpoint(const std::string& step_dir, bool weights_only);
  OptimizerView OptimizerPlan() const;
  // One step's micro-batches (staged) through the pipeline (one stage when pp == 1); their
  // losses stay on the device (GptModel::DeferLosses).
  absl::Status PipelineStep(int64_t accum, float loss_weight);
  // Fine-tuning data (the shards carry loss masks): the step's count of targets that count,
  // summed over the micro-batches and the data-parallel group (the same on every stage and
  // tensor rank: they read the same batches).
  absl::StatusOr<double> CountStepTargets(int64_t accum);
  // The validation loss over the counted targets of eval_batches batches (masked data).
  absl::StatusOr<float> EvaluateMasked();
  // The tied embedding's gradient summed over the embedding group (first and last pipeline
  // stage), then handed to the data-parallel reduction.
  absl::Status ReduceTiedEmbedding();
  // Top-k sampling (k = 40) from row `row` of this rank's vocab slice of the logits (the
  // tensor group gathers the rest), draw `i` of the Philox stream `seed`.
  absl::StatusOr<int32_t> PickToken(const Tensor& logits, int64_t row, uint64_t seed, int i);
  // train/trainer_guards.cc: whether the next step would end past runtime.max_duration_s
  // minus runtime.stop_margin_s, by the mean step time so far (this rank's view).
  bool TimeIsUp() const;
  // train/trainer_guards.cc: every rank's agreement on whether this step's loss or gradient
  // norm is non-finite anywhere; true = skip the optimizer. The runtime.max_nonfinite_steps-th
  // such step in a row is an error naming the step.
  absl::StatusOr<bool> SkipIfNonFinite(double loss, double grad_norm);

  JobConfig config_;
  JobLayout numbers_;
  // The ops' stream (created at start-up; declared before everything that queues work on it,
  // so it is destroyed after them).
  std::unique_ptr<ops::OpStreamScope> op_stream_;
  World* world_ = nullptr;
  std::unique_ptr<ProcessGroups> groups_;
  // Flat-buffer ranges whose squares this rank adds to the gradient norm.
  std::vector<std::pair<int64_t, int64_t>> norm_runs_;
  // Step times, tokens and communication seconds, and the progress line made of them.
  std::unique_ptr<StepProgress> progress_;
  Device* device_ = nullptr;
  std::unique_ptr<GptModel> model_;
  std::unique_ptr<GradReducer> reducer_;
  std::unique_ptr<ModelOptimizer> optimizer_;
  std::unique_ptr<DataLoader> train_data_, val_data_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<MetricsSinks> sinks_;  // rank 0 with a run_dir
  Tensor norm_acc_;                      // f32 [1] on the device: the last element of readback_
  // The step's per-row losses (one row of micro x T per micro-batch, DeferLosses) and then the
  // squared gradient norm, on the device: the host reads them once per step.
  Tensor readback_, loss_rows_;
  // The step's token ids, staged in host memory the device copies from asynchronously
  // (Device::AllocateHostStaging), the next step's prefetched during compute; it knows the data
  // position of the batches used, which checkpoints save (train/step_batches.h).
  std::unique_ptr<StepBatches> batches_;
  // On a device: timing events on the ops' stream around its wait for the data-parallel
  // reduction (the reduction's exposed part as the device saw it, for comm_share).
  std::unique_ptr<Event> reduce_begin_, reduce_end_;
  std::vector<int32_t> inputs_, targets_;  // evaluation
  // Masked (fine-tuning) data (the step's segment ids come with batches_); evaluation's segment
  // ids, host and device.
  bool masked_ = false;
  std::vector<int32_t> eval_segments_host_;
  Tensor eval_segments_;
  std::vector<int32_t> eval_positions_host_;  // data.reset_position_ids: reset at documents
  Tensor eval_positions_;
  // Context parallelism: whole sequences from the loader before this rank's chunks are cut.
  std::vector<int32_t> cp_full_in_, cp_full_tg_;
  // Reads one micro-batch into in/targets (micro x seq_len / cp each): this rank's chunks; and,
  // when given (fine-tuning data), the whole sequences' segment ids (micro x seq_len).
  absl::Status NextContextBatch(DataLoader& data, int micro, absl::Span<int32_t> in,
                                absl::Span<int32_t> targets, absl::Span<int32_t> segments = {});
  std::unique_ptr<PipelineRunner> pipeline_;
  // Index in the table of a parameter shared with another pipeline stage ("wte.weight" on the
  // first and last stage of a tied model), whose readiness waits for the embedding group; -1: none.
  int tied_index_ = -1;
  int64_t step_ = 0;  // optimizer steps done
  // Host waits on the device inside Step() this run, and the most in one step.
  int64_t step_host_syncs_ = 0, max_step_host_syncs_ = 0;
  double last_grad_norm_ = 0;
  FaultInjector fault_;                               // LOOM_FAULT (tests of the failure handling)
  int64_t skipped_steps_ = 0, nonfinite_in_row_ = 0;  // non-finite steps: in all, in a row
  bool last_step_skipped_ = false;
  absl::Time start_time_ = absl::Now();  // the time limit counts from here
  std::string stop_reason_;
  std::unique_ptr<CheckpointSaver> saver_;  // with a checkpoint.dir
  int64_t last_saved_step_ = -1;
  std::string resumed_from_;
  std::string resumed_note_;  // "resumed from ...", logged once every rank agrees
  std::string run_id_;        // this run's id (metrics/run_dir.h): saved, carried by resumes
};

}  // namespace loom
