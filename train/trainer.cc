#include "train/trainer.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "job/job_check.h"
#include "model/model_file.h"
#include "model/sampling.h"
#include "ops/linear.h"
#include "ops/optimizer.h"
#include "ops/roofline.h"
#include "parallel/distributed_optimizer.h"
#include "parallel/grad_reducer.h"
#include "parallel/nccl_backend.h"
#include "runtime/cuda_device_choice.h"
#include "runtime/logging.h"
#include "runtime/philox.h"
#include "runtime/status.h"
#include "runtime/test_device.h"
#include "runtime/timer.h"
#include "train/lr_schedule.h"
#include "train/stop_signal.h"

namespace loom {

namespace {

// The GPU of a rank: chosen from its place on the node before any device is probed
// (runtime/cuda_device_choice.h; one visible device per rank is device 0).
absl::StatusOr<Device*> LocalGpu(const World& world) {
  const LocalPlacement where{world.local_rank(), world.local_size()};
  LOOM_ASSIGN_OR_RETURN(int index,
                        ChooseCudaDevice(where, CudaDeviceCount(), CudaUnavailableReason()));
  LOOM_LOG(INFO) << "GPU: " << DescribeCudaChoice(where, CudaDeviceCount(), index);
  return CudaDevice(index);
}

// The test device of a rank, chosen as a GPU is: its local rank's, or the one device visible
// when a per-rank visibility list (LOOM_TEST_VISIBLE_DEVICES, as CUDA_VISIBLE_DEVICES) shows
// only one.
absl::StatusOr<Device*> LocalTestDevice(const World& world) {
  const int visible = TestDeviceCount();
  if (visible == 1) return TestDevice(0);
  if (visible < world.local_size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        world.local_size(), " ranks run on this node but only ", visible,
        " test device(s) are visible (LOOM_TEST_DEVICES, LOOM_TEST_VISIBLE_DEVICES): each local "
        "rank needs its own"));
  }
  return TestDevice(world.local_rank());
}

absl::StatusOr<Device*> ChooseDevice(const JobConfig& job, const World& world) {
  switch (job.runtime().backend()) {
    case RuntimeConfig::CPU:
      return CpuDevice();
    case RuntimeConfig::TEST:
      return LocalTestDevice(world);
    case RuntimeConfig::CUDA:
      return LocalGpu(world);
    default:
      if (CudaDeviceCount() > 0) return LocalGpu(world);
      return CpuDevice();
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const JobConfig& config, World* world) {
  std::unique_ptr<Trainer> t(new Trainer());
  t->config_ = config;
  t->world_ = world;
  LOOM_ASSIGN_OR_RETURN(t->fault_, FaultInjector::FromEnv(world->rank()));
  // The same verdict as `loom config check` (what this build cannot do yet included), before
  // anything large is allocated.
  const JobCheck check =
      CheckJob(config, world->size(), LocalPlacement{world->local_rank(), world->local_size()},
               /*ranks_per_host=*/0, /*probe_locks=*/false);
  LOOM_RETURN_IF_ERROR(JobCheckStatus(check, world->size()));
  t->numbers_ = *check.numbers;
  const JobLayout& n = t->numbers_;
  // Every wait on a collective of this job has the job's deadline.
  world->state()->timeout = absl::Seconds(config.runtime().collective_timeout_s());
  LOOM_ASSIGN_OR_RETURN(t->device_, ChooseDevice(config, *world));
  // Device tensors travel over the device's backend, NCCL on a GPU (collective: every rank
  // chose the same backend), in the groups that carry them (below); the world communicator
  // carries host values only and gets none. Host waits on the device carry the job's deadline.
  const bool on_device = !t->device_->host_memory();
  // Ops run on a stream of their own, ordered against the communication streams by events
  // (on the test device that order is real: a missing event gives wrong numbers).
  LOOM_ASSIGN_OR_RETURN(t->op_stream_, ops::OpStreamScope::Create(t->device_));
  LOOM_ASSIGN_OR_RETURN(RankGrid grid, RankGrid::Create(world->size(), n.tp, n.dp, n.pp, n.cp));
  // Every group of more than one rank gets its device backend when the model lives on a device.
  LOOM_ASSIGN_OR_RETURN(
      t->groups_,
      ProcessGroups::Create(*world, grid, on_device && world->size() > 1 ? t->device_ : nullptr));
  const GridCoord& coord = t->groups_->coord();
  SetLogRankInfo(world->rank(), coord.dp, coord.pp, coord.tp, n.cp > 1 ? coord.cp : -1);
  if (config.runtime().threads_per_rank() > 0) {
    omp_set_num_threads(config.runtime().threads_per_rank());
    openblas_set_num_threads(config.runtime().threads_per_rank());
  }
  const bool bf16 = n.bf16;
  ops::SetTf32ForFp32Gemms(config.runtime().tf32());

  // Data first: a missing or bad shard is reported before the model takes any memory.
  LOOM_RETURN_IF_ERROR(t->BuildData());

  const GptConfig& gpt = n.model;
  std::optional<std::vector<float>> init;
  bool init_from_checkpoint = false;
  LOOM_RETURN_IF_ERROR(t->BuildModel(&init, &init_from_checkpoint));
  LOOM_RETURN_IF_ERROR(t->BuildOptimizer());
  const ParamTable& table = t->model_->layout();
  // Initial weights, whole (this tensor rank's slices) in fp32: the optimizer keeps the master
  // copy it owns and writes the model's weights.
  {
    std::vector<float> weights;
    if (init) {
      weights = std::move(*init);  // this rank's slices, read by BuildModel
    } else {
      weights.resize(table.total());
      LOOM_RETURN_IF_ERROR(
          InitParams(table, static_cast<uint64_t>(config.runtime().seed()),
                     Tensor::View(weights.data(), Shape{table.total()}, DType::kF32, CpuDevice())));
    }
    LOOM_ASSIGN_OR_RETURN(Tensor full,
                          Tensor::Empty(Shape{table.total()}, DType::kF32, t->device_));
    LOOM_RETURN_IF_ERROR(full.CopyFromFloats(weights));
    LOOM_RETURN_IF_ERROR(t->optimizer_->LoadWeights(full));
  }
  // Resume (checkpoint.resume), or weights from a model.init_from step directory.
  LOOM_RETURN_IF_ERROR(t->RestoreCheckpoint(init_from_checkpoint));
  if (t->run_id_.empty()) t->run_id_ = NewRunId();  // a fresh start (or an id-less checkpoint)
  {
    const StateBytes got = t->optimizer_->MeasuredStateBytes();
    const int shards = n.distributed_optimizer ? n.dp * n.cp : 1;  // ZeRO-1 over dp x cp
    const StateBytes want = ExpectedStateBytes(bf16, shards);
    LOOM_LOG(INFO) << absl::StrFormat(
        "model state: %.2f bytes/parameter (weights %.2f, gradients %.2f, master weights %.2f, "
        "moments %.2f; expected %.2f = %s)",
        got.total(), got.weights, got.grads, got.master, got.moments, want.total(),
        bf16 ? absl::StrCat("2 + 4 + 12/", shards) : absl::StrCat("4 + 4 + 8/", shards));
  }
  // Init and restore leave temporaries in the allocator's cache: give them back, then measure
  // what the CUDA context, cuBLAS and NCCL hold beside loom's tensors (the job check reserved
  // check.reserve for all but the context, which its probe measured).
  if (!t->device_->host_memory()) {
    LOOM_RETURN_IF_ERROR(t->device_->Synchronize());
    t->device_->allocator().EmptyCache();
    if (t->device_->is_cuda()) {
      auto mem = CudaMemoryInfo(t->device_->index());
      if (mem.ok()) {
        const double used = static_cast<double>(mem->total_bytes - mem->free_bytes);
        const double loom = static_cast<double>(t->device_->allocator().stats().reserved_bytes);
        LOOM_LOG(INFO) << absl::StrFormat(
            "GPU memory after init: %.0f MiB used, %.0f MiB by loom's tensors, %.0f MiB by the "
            "CUDA context, cuBLAS and NCCL (reserved for cuBLAS and NCCL: %.0f MiB)",
            used / 1048576, loom / 1048576, (used - loom) / 1048576,
            static_cast<double>(check.reserve) / 1048576);
      }
    }
  }
  {
    // The step's one read-back (losses, then the gradient norm's squares) and its token staging.
    const int64_t accum = n.grad_accum_steps;
    // With context parallelism a micro-batch is this rank's seq_len / cp tokens per sequence.
    const int64_t micro = n.micro_batch_size, T = n.seq_len_per_cp_rank;
    const int64_t rows = micro * T;
    t->cp_full_in_.resize(micro * n.seq_len);
    t->cp_full_tg_.resize(micro * n.seq_len);
    LOOM_ASSIGN_OR_RETURN(t->readback_,
                          Tensor::Zeros(Shape{accum * rows + 1}, DType::kF32, t->device_));
    LOOM_ASSIGN_OR_RETURN(t->loss_rows_,
                          t->readback_.FlatView(0, accum * rows).Reshape(Shape{accum, rows}));
    t->norm_acc_ = t->readback_.FlatView(accum * rows, 1);
    // Timing events for comm_share on a device (AccountDeviceComm).
    if (!t->device_->host_memory()) {
      LOOM_ASSIGN_OR_RETURN(t->reduce_begin_, Event::Create(t->device_));
      LOOM_ASSIGN_OR_RETURN(t->reduce_end_, Event::Create(t->device_));
    }
    // After the resume: the batches start from the restored data position. With context
    // parallelism each holds this rank's chunks of the loader's whole sequences.
    LOOM_ASSIGN_OR_RETURN(
        t->batches_, StepBatches::Create(t->device_, t->train_data_.get(), accum, micro, n.seq_len,
                                         n.cp, coord.cp, config.data().reset_position_ids()));
    t->masked_ = t->batches_->masked();
    if (t->masked_) {
      LOOM_LOG(INFO) << "data: loss masks and document boundaries from the shards' token flags "
                        "(the loss is the mean over the counted targets of the global batch); "
                     << (config.data().reset_position_ids()
                             ? "positions restart at each document (data.reset_position_ids)"
                             : "positions run across documents (data.reset_position_ids false)");
    }
  }
  // The gradient norm counts each parameter once, on the rank that owns it (OwnsParam, the
  // same rule checkpoints save by).
  for (const ParamSpec& s : t->model_->layout().specs()) {
    if (!OwnsParam(s, coord.tp)) continue;
    if (!t->norm_runs_.empty() && t->norm_runs_.back().second == s.offset) {
      t->norm_runs_.back().second = s.offset + s.numel();
    } else {
      t->norm_runs_.push_back({s.offset, s.offset + s.numel()});
    }
  }

  LOOM_RETURN_IF_ERROR(t->OpenSinks());
  const int T = static_cast<int>(n.seq_len);
  const double flops_per_token = TrainingFlopsPerToken(gpt, n.parameters, T);
  // MFU's denominator: the device's GEMM peak (measured sgemm on the CPU), or none (MFU is then
  // not reported) for a GPU loom has no figures for.
  auto roof = bench::GemmPeak(t->device_);
  const std::string peak_source =
      roof.ok() ? roof->description : std::string(roof.status().message());
  const double peak_flops = roof.ok() ? roof->flops * world->size() : 0.0;
  t->progress_ =
      std::make_unique<StepProgress>(n.tokens_per_step, flops_per_token, peak_flops,
                                     n.tp > 1 || n.dp > 1 || n.pp > 1 || n.cp > 1,
                                     n.tp > 1 || n.dp > 1);
  const int64_t micro = n.micro_batch_size;
  t->inputs_.resize(micro * T);
  t->targets_.resize(micro * T);

  LOOM_LOG(INFO) << "model: " << (gpt.is_llama() ? "LLaMA" : "GPT-2") << ", " << gpt.layers
                 << " layers, hidden " << gpt.hidden << ", " << gpt.heads << " heads ("
                 << gpt.kv_heads << " kv), vocab " << gpt.vocab << " (padded " << gpt.padded_vocab
                 << "), " << n.parameters << " parameters, on " << t->device_->Name();
  LOOM_LOG(INFO) << "data: " << t->train_data_->num_tokens() << " training tokens in "
                 << t->train_data_->shards().size() << " shard(s), "
                 << t->train_data_->num_samples() << " sequences of " << T << "; " << n.dp
                 << " data-parallel rank(s), " << n.grad_accum_steps << " micro-batch(es) of "
                 << micro << " per step, " << n.tokens_per_step << " tokens per step";
  LOOM_LOG(INFO) << "MFU counts 6N + 6*L*C*T = " << absl::StrFormat("%.3g", flops_per_token)
                 << " flop/token against a peak of " << absl::StrFormat("%.3g", peak_flops)
                 << " flop/s (" << peak_source << ")";
  return t;
}

absl::Status Trainer::FinishGradReduction() {
  Timer timer;
  if (reduce_begin_) LOOM_RETURN_IF_ERROR(reduce_begin_->Record(op_stream_->stream()));
  LOOM_RETURN_IF_ERROR(reducer_->Finish());
  if (reduce_end_) LOOM_RETURN_IF_ERROR(reduce_end_->Record(op_stream_->stream()));
  CommSeconds comm;
  comm.dp_exposed = timer.Seconds();  // the part of the reduction backward did not hide
  comm.dp_total = reducer_->stats().comm_s;
  progress_->AddComm(comm);
  return absl::OkStatus();
}

absl::Status Trainer::AccountDeviceComm() {
  if (!reduce_begin_) return absl::OkStatus();
  // Both events are behind the read-back the host has just waited for. A metric never ends a
  // run: without the events' time the exposed part counts as 0 (said once).
  absl::StatusOr<float> exposed_ms = reduce_end_->ElapsedMs(*reduce_begin_);
  if (!exposed_ms.ok()) {
    static std::once_flag said;
    std::call_once(said, [&] {
      LOOM_LOG(WARNING) << "comm_share: no time for the gradient reduction's exposed part ("
                        << exposed_ms.status().message() << "); counted as 0";
    });
  }
  progress_->AddDeviceComm(TakeDeviceCommSeconds(),
                           exposed_ms.ok() ? std::max(0.0f, *exposed_ms) / 1e3 : 0.0);
  return absl::OkStatus();
}

absl::Status Trainer::QueueGradNormSquares() {
  LOOM_RETURN_IF_ERROR(norm_acc_.Fill0());
  // This rank's reduced gradients (all of them, or its shards under ZeRO-1) intersected with
  // the ranges it counts (replicated parameters on tensor rank 0 only).
  for (const FlatRange& own : optimizer_->owned_ranges()) {
    for (const auto& [begin, end] : norm_runs_) {
      const int64_t lo = std::max(begin, own.begin), hi = std::min(end, own.end);
      if (lo >= hi) continue;
      LOOM_RETURN_IF_ERROR(
          ops::SumOfSquaresAccumulate(model_->grads().FlatView(lo, hi - lo), norm_acc_));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Trainer::GradNormFrom(double local_squares) {
  double sq[1] = {local_squares};
  LOOM_RETURN_IF_ERROR(groups_->model().AllReduceHost(absl::MakeSpan(sq, 1), ReduceOp::kSum));
  if (optimizer_->sharded()) {  // shards over dp x cp
    LOOM_RETURN_IF_ERROR(groups_->dpcp().AllReduceHost(absl::MakeSpan(sq, 1), ReduceOp::kSum));
  }
  return std::sqrt(sq[0]);
}

absl::Status Trainer::NextContextBatch(DataLoader& data, int micro, absl::Span<int32_t> in,
                                       absl::Span<int32_t> targets, absl::Span<int32_t> segments) {
  const JobLayout& n = numbers_;
  if (n.cp == 1) return data.NextBatch(micro, in, targets, segments);
  // Every rank of the cp group reads the same sequences (the loader's position moves the same
  // on all of them) and keeps its two chunks of each, inputs and targets alike.
  LOOM_RETURN_IF_ERROR(
      data.NextBatch(micro, absl::MakeSpan(cp_full_in_), absl::MakeSpan(cp_full_tg_), segments));
  const int r = groups_->coord().cp;
  LOOM_RETURN_IF_ERROR(
      SelectContextChunks(cp_full_in_.data(), micro, n.seq_len, n.cp, r, in.data()));
  return SelectContextChunks(cp_full_tg_.data(), micro, n.seq_len, n.cp, r, targets.data());
}

absl::StatusOr<float> Trainer::Step() {
  const int64_t accum = numbers_.grad_accum_steps;
  world_->state()->step = step_ + 1;  // named by a collective that times out
  fault_.BeforeStep(step_ + 1);
  LOOM_RETURN_IF_ERROR(model_->ZeroGrads());
  // Every micro-batch of the step is staged and its copy queued before any compute (by the
  // previous step's prefetch, or now): the host never waits for a copy, and on a GPU the copies
  // run ahead of the micro-batches using them.
  LOOM_RETURN_IF_ERROR(batches_->Next());
  // Each micro-batch's loss is the mean of its B x T rows: weighted 1 / accum, the gradient is
  // that of the step's mean (the data-parallel reduction then averages the replicas). With loss
  // masks the objective is the mean over the counted targets of the whole global batch: each
  // row's weight is dp x cp / (the global count), so that the average of the gradients over
  // dp x cp is right too (each cp rank counts the targets of its chunks; the count is summed
  // over dp x cp).
  const double dp = static_cast<double>(groups_->dpcp().size());
  const int64_t rows_per_batch = loss_rows_.dim(1);
  float loss_weight = 1.0f / static_cast<float>(accum);
  double counted = 0;
  if (masked_) {
    LOOM_ASSIGN_OR_RETURN(counted, CountStepTargets(accum));
    loss_weight =
        counted > 0 ? static_cast<float>(static_cast<double>(rows_per_batch) * dp / counted) : 0;
    model_->SetSegments(
        std::vector<Tensor>(batches_->segments().begin(), batches_->segments().begin() + accum));
    if (!batches_->positions().empty()) {
      model_->SetPositions(std::vector<Tensor>(batches_->positions().begin(),
                                               batches_->positions().begin() + accum));
    }
  }
  // The losses stay on the device until the one read-back below.
  model_->DeferLosses(loss_rows_);
  const absl::Status ran = PipelineStep(accum, loss_weight);
  const int64_t heads = model_->deferred_losses();
  model_->DeferLosses(Tensor());
  model_->SetSegments({});
  model_->SetPositions({});
  LOOM_RETURN_IF_ERROR(ran);
  LOOM_RETURN_IF_ERROR(FinishGradReduction());
  LOOM_RETURN_IF_ERROR(
      fault_.AtGradients(step_ + 1, model_->grads(), optimizer_->owned_ranges(), norm_runs_));
  LOOM_RETURN_IF_ERROR(QueueGradNormSquares());
  // The step's work is queued: while the device runs it, the host reads the next step's batches
  // and queues their copies (after this step's ops in stream order). Not past the run's end.
  if (step_ + 1 < numbers_.steps_this_run) LOOM_RETURN_IF_ERROR(batches_->Prefetch());
  // The step's one host wait on the device: its losses and its gradient norm's squares.
  const int64_t rows = loss_rows_.dim(1);
  LOOM_ASSIGN_OR_RETURN(const std::vector<float> back, readback_.ToFloatVector());
  LOOM_RETURN_IF_ERROR(AccountDeviceComm());
  double loss_sum = 0;
  double loss_mean[1] = {0};
  if (masked_) {
    // Ignored rows hold 0; this replica's share of the global mean (averaged over dp below).
    for (int64_t i = 0; i < heads * rows; ++i) loss_sum += back[i];
    loss_mean[0] = counted > 0 ? loss_sum * dp / counted : 0.0;
  } else {
    for (int64_t k = 0; k < heads; ++k) loss_sum += GptModel::MeanLoss(&back[k * rows], rows);
    loss_mean[0] = loss_sum / static_cast<double>(accum);
  }
  LOOM_RETURN_IF_ERROR(fault_.AtStep(step_ + 1, &loss_mean[0]));
  // The loss is computed on the last pipeline stage: every stage takes it from there.
  if (numbers_.pp > 1) {
    LOOM_RETURN_IF_ERROR(groups_->pp().AllReduceHost(absl::MakeSpan(loss_mean, 1), ReduceOp::kSum));
  }
  // Each cp rank's loss is the mean over its (equally many) tokens: the mean over dp x cp is the
  // mean over the step's tokens.
  LOOM_RETURN_IF_ERROR(
      groups_->dpcp().AllReduceHost(absl::MakeSpan(loss_mean, 1), ReduceOp::kAvg));
  LOOM_ASSIGN_OR_RETURN(last_grad_norm_, GradNormFrom(static_cast<double>(back.back())));
  // Checked before the optimizer touches the weights: a poisoned update must never be applied.
  LOOM_ASSIGN_OR_RETURN(const bool skip, SkipIfNonFinite(loss_mean[0], last_grad_norm_));
  const double clip = config_.optimizer().grad_clip();
  float grad_scale = 1.0f;
  if (clip > 0 && last_grad_norm_ > clip) grad_scale = static_cast<float>(clip / last_grad_norm_);
  const float lr = static_cast<float>(LearningRate(config_, step_));
  ++step_;
  if (!skip) LOOM_RETURN_IF_ERROR(optimizer_->Step(lr, step_, grad_scale));
  return static_cast<float>(loss_mean[0]);
}

absl::StatusOr<double> Trainer::CountStepTargets(int64_t accum) {
  const int64_t rows = loss_rows_.dim(1);
  double count[1] = {0};
  for (int64_t k = 0; k < accum; ++k) {
    const absl::Span<const int32_t> targets = batches_->host_targets(k);
    for (int64_t i = 0; i < rows; ++i) count[0] += targets[i] >= 0 ? 1 : 0;
  }
  // Over dp x cp: with context parallelism each rank holds its chunks' targets.
  LOOM_RETURN_IF_ERROR(groups_->dpcp().AllReduceHost(absl::MakeSpan(count, 1), ReduceOp::kSum));
  return count[0];
}

absl::Status Trainer::PipelineStep(int64_t accum, float loss_weight) {
  // Every stage has the step's batches (the data position stays the same on all of them); the
  // first stage uses the tokens, the last the targets.
  std::vector<Tensor> in(batches_->inputs().begin(), batches_->inputs().begin() + accum);
  std::vector<Tensor> tg(batches_->targets().begin(), batches_->targets().begin() + accum);
  LOOM_RETURN_IF_ERROR(reducer_->BeginBackward());
  LOOM_RETURN_IF_ERROR(pipeline_->TrainStep(in, tg, loss_weight).status());
  return ReduceTiedEmbedding();
}

absl::Status Trainer::ReduceTiedEmbedding() {
  if (tied_index_ < 0) return absl::OkStatus();
  const ParamSpec& s = model_->layout().specs()[tied_index_];
  Timer timer;
  LOOM_RETURN_IF_ERROR(groups_->embedding().AllReduce(model_->Grad(s), ReduceOp::kSum));
  CommSeconds comm;
  comm.pp = timer.Seconds();
  progress_->AddComm(comm);
  LOOM_RETURN_IF_ERROR(reducer_->MarkReady(tied_index_));
  return reducer_->Poll();
}

absl::StatusOr<float> Trainer::Evaluate() {
  if (!val_data_) return absl::FailedPreconditionError("no validation data (data.val is empty)");
  if (val_data_->has_loss_mask()) return EvaluateMasked();
  const int micro = config_.parallel().micro_batch_size();
  const int T = static_cast<int>(numbers_.seq_len_per_cp_rank);
  val_data_->Rewind();
  double sum[1] = {0};
  const int batches = config_.logging().eval_batches();
  for (int k = 0; k < batches; ++k) {
    LOOM_RETURN_IF_ERROR(NextContextBatch(*val_data_, micro,
                                          absl::MakeSpan(inputs_.data(), int64_t{micro} * T),
                                          absl::MakeSpan(targets_.data(), int64_t{micro} * T)));
    Tensor in = Tensor::View(inputs_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    Tensor tg = Tensor::View(targets_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    LOOM_ASSIGN_OR_RETURN(const float loss,
                          pipeline_->ForwardOnly(in, tg, GptModel::HeadMode::kEval));
    sum[0] += loss;
  }
  // The last pipeline stage has the loss; tensor ranks hold the same one; the data-parallel
  // replicas saw different batches.
  if (numbers_.pp > 1) {
    LOOM_RETURN_IF_ERROR(groups_->pp().AllReduceHost(absl::MakeSpan(sum, 1), ReduceOp::kSum));
  }
  // ... and the cp ranks each their share of the same sequences' tokens.
  LOOM_RETURN_IF_ERROR(groups_->dpcp().AllReduceHost(absl::MakeSpan(sum, 1), ReduceOp::kSum));
  return static_cast<float>(sum[0] / (static_cast<double>(batches) * groups_->dpcp().size()));
}

absl::StatusOr<float> Trainer::EvaluateMasked() {
  const int micro = config_.parallel().micro_batch_size();
  // This rank's tokens of each sequence (its chunks with cp > 1); segment ids stay whole.
  const int64_t T = numbers_.seq_len_per_cp_rank, S = numbers_.seq_len;
  const int64_t rows = int64_t{micro} * T;
  val_data_->Rewind();
  eval_segments_host_.resize(micro * S);
  if (!eval_segments_.defined()) {
    LOOM_ASSIGN_OR_RETURN(eval_segments_, Tensor::Empty(Shape{micro, S}, DType::kI32, device_));
  }
  // Validation examples at the positions training used (data.reset_position_ids).
  const bool reset = config_.data().reset_position_ids();
  if (reset && !eval_positions_.defined()) {
    eval_positions_host_.resize(rows);
    LOOM_ASSIGN_OR_RETURN(eval_positions_, Tensor::Empty(Shape{micro, T}, DType::kI32, device_));
  }
  double sum[2] = {0, 0};  // loss summed over counted targets, their count
  const int batches = config_.logging().eval_batches();
  for (int k = 0; k < batches; ++k) {
    LOOM_RETURN_IF_ERROR(NextContextBatch(*val_data_, micro, absl::MakeSpan(inputs_.data(), rows),
                                          absl::MakeSpan(targets_.data(), rows),
                                          absl::MakeSpan(eval_segments_host_)));
    LOOM_RETURN_IF_ERROR(eval_segments_.CopyFrom(
        Tensor::View(eval_segments_host_.data(), Shape{micro, S}, DType::kI32, CpuDevice())));
    model_->SetSegments({eval_segments_});
    if (reset) {
      // From the whole sequences' documents, cut to this rank's chunks with cp.
      LOOM_RETURN_IF_ERROR(ResetPositions(eval_segments_host_.data(), micro, S,
                                          static_cast<int>(numbers_.cp), groups_->coord().cp,
                                          eval_positions_host_.data()));
      LOOM_RETURN_IF_ERROR(eval_positions_.CopyFrom(
          Tensor::View(eval_positions_host_.data(), Shape{micro, T}, DType::kI32, CpuDevice())));
      model_->SetPositions({eval_positions_});
    }
    Tensor in = Tensor::View(inputs_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    Tensor tg = Tensor::View(targets_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    auto loss = pipeline_->ForwardOnly(in, tg, GptModel::HeadMode::kEval);
    model_->SetSegments({});
    model_->SetPositions({});
    LOOM_RETURN_IF_ERROR(loss.status());
    sum[0] += static_cast<double>(*loss) * static_cast<double>(rows);  // ignored rows are 0
    for (int64_t i = 0; i < rows; ++i) sum[1] += targets_[i] >= 0 ? 1 : 0;
  }
  // The loss sum lives on the last stage; every stage counted the same targets.
  if (numbers_.pp > 1) {
    LOOM_RETURN_IF_ERROR(groups_->pp().AllReduceHost(absl::MakeSpan(sum, 1), ReduceOp::kSum));
  }
  // Replicas and cp ranks each hold their share of the counted targets.
  LOOM_RETURN_IF_ERROR(groups_->dpcp().AllReduceHost(absl::MakeSpan(sum, 2), ReduceOp::kSum));
  return static_cast<float>(sum[1] > 0 ? sum[0] / sum[1] : 0.0);
}

absl::StatusOr<std::vector<int32_t>> Trainer::Sample(const std::vector<int32_t>& prompt,
                                                     int length) {
  const int T = config_.data().seq_len();
  std::vector<int32_t> seq = prompt;
  if (seq.empty()) return absl::InvalidArgumentError("sampling needs a non-empty prompt");
  const uint64_t seed = static_cast<uint64_t>(config_.runtime().seed()) * 1000003ull + step_;
  // With context parallelism the cp group runs the window together (ring attention), each rank
  // on its two chunks; the rank holding the last filled position picks the token.
  const int cp = static_cast<int>(numbers_.cp), cp_rank = groups_->coord().cp;
  const ops::ChunkedPositions mine = ContextChunks(T, cp, cp_rank);
  std::vector<int32_t> window(T, 0), local(T / cp, 0);
  for (int i = 0; i < length && static_cast<int>(seq.size()) < T + 1; ++i) {
    const int len = std::min<int>(static_cast<int>(seq.size()), T);
    std::copy(seq.end() - len, seq.end(), window.begin());
    if (cp > 1) {
      LOOM_RETURN_IF_ERROR(SelectContextChunks(window.data(), 1, T, cp, cp_rank, local.data()));
    }
    Tensor in = Tensor::View(cp > 1 ? local.data() : window.data(), Shape{1, T / cp}, DType::kI32,
                             CpuDevice());
    const int64_t p = len - 1, c = mine.chunk;  // the row of position p here, or -1
    const int64_t row = cp == 1                                   ? p
                        : p >= mine.start0 && p < mine.start0 + c ? p - mine.start0
                        : p >= mine.start1 && p < mine.start1 + c ? c + p - mine.start1
                                                                  : -1;
    if (pipeline_) {
      // Through every stage; the last one picks the token and the stages (and cp ranks) take it
      // from there.
      LOOM_RETURN_IF_ERROR(pipeline_->ForwardOnly(in, in, GptModel::HeadMode::kLogits).status());
      double token[1] = {0};
      if (model_->stage().head && row >= 0) {
        LOOM_ASSIGN_OR_RETURN(token[0], PickToken(model_->logits(), row, seed, i));
      }
      LOOM_RETURN_IF_ERROR(groups_->pp().AllReduceHost(absl::MakeSpan(token, 1), ReduceOp::kSum));
      if (cp > 1) {
        LOOM_RETURN_IF_ERROR(groups_->cp().AllReduceHost(absl::MakeSpan(token, 1), ReduceOp::kSum));
      }
      seq.push_back(static_cast<int32_t>(token[0]));
      continue;
    }
    LOOM_ASSIGN_OR_RETURN(Tensor logits, model_->Forward(in));
    LOOM_ASSIGN_OR_RETURN(const int32_t next, PickToken(logits, p, seed, i));
    seq.push_back(next);
  }
  return std::vector<int32_t>(seq.begin() + prompt.size(), seq.end());
}

absl::StatusOr<int32_t> Trainer::PickToken(const Tensor& logits, int64_t row, uint64_t seed,
                                           int i) {
  return SampleTopK(logits, row, model_->config().vocab, model_->config().padded_vocab,
                    &groups_->tp(), seed, static_cast<uint64_t>(i));
}

absl::Status Trainer::LogStep(float loss, std::optional<float> val_loss) {
  const int64_t total = numbers_.steps_this_run;
  const bool last = step_ == total;
  const int interval = std::max(1, config_.logging().interval());
  if (step_ % interval != 0 && !last && !val_loss && !last_step_skipped_) {
    return absl::OkStatus();
  }
  StepProgress::Report r = progress_->Flush(
      step_, total, loss, LearningRate(config_, step_ - 1), last_grad_norm_,
      static_cast<int64_t>(device_->allocator().stats().peak_bytes), skipped_steps_, val_loss);
  for (const std::string& line : r.lines) LOOM_LOG(INFO) << line;
  if (r.raised_peak_flops > 0 && world_->rank() == 0) {
    // The cached CPU peak was measured under load: raise it (per process) for the next run.
    auto raised = bench::RaiseCachedGemmPeak(device_, r.raised_peak_flops / world_->size());
    if (raised.ok() && *raised) {
      LOOM_LOG(INFO) << "MFU: raised the cached GEMM peak in " << bench::GemmPeakCachePath();
    }
  }
  if (!r.device_seconds.empty()) {
    // The progress line's communication times are host issue times on a device (~0): the
    // collectives' own time on their streams (CUDA events, parallel/nccl_backend.h; the test
    // device's stream times), which comm_share is made of.
    std::string line;
    for (const auto& [group, seconds] : r.device_seconds) {
      absl::StrAppend(&line, line.empty() ? "" : ", ", group,
                      absl::StrFormat(" %.1f ms", seconds * 1e3));
    }
    LOOM_LOG(INFO) << "communication on " << device_->Name()
                   << " since the last line (stream events): " << line
                   << (r.metrics.comm_share
                           ? absl::StrFormat("; comm_share %.6f", *r.metrics.comm_share)
                           : std::string());
  }
  if (sinks_) sinks_->Log(r.metrics);  // a failing sink is switched off, never the run
  return absl::OkStatus();
}

// Every rank must stop at the same step boundary, or a peer would wait forever in the next
// step's collectives: the stop flags are summed over the world, the one place this happens.
absl::StatusOr<bool> Trainer::AnyRankAskedToStop() {
  double flag[2] = {StopSignalReceived() != 0 ? 1.0 : 0.0, TimeIsUp() ? 1.0 : 0.0};
  LOOM_RETURN_IF_ERROR(world_->comm().AllReduceHost(absl::MakeSpan(flag, 2), ReduceOp::kSum));
  if (flag[0] > 0) {
    stop_reason_ = StopSignalReceived() != 0 ? StopSignalName() : "a peer rank's signal";
  } else if (flag[1] > 0) {
    stop_reason_ = !TimeIsUp()
                       ? std::string("a peer rank's time limit")
                       : absl::StrCat("time limit: runtime.max_duration_s = ",
                                      config_.runtime().max_duration_s(), " less a margin of ",
                                      config_.runtime().stop_margin_s(), " s");
  }
  return flag[0] > 0 || flag[1] > 0;
}

absl::Status Trainer::Run() {
  const int64_t total = numbers_.steps_this_run;
  const int eval_every = config_.logging().eval_interval();
  const int sample_every = config_.logging().sample_interval();
  while (step_ < total) {
    LOOM_ASSIGN_OR_RETURN(const bool stop, AnyRankAskedToStop());
    if (stop) {
      LOOM_RETURN_IF_ERROR(CheckpointAtStop());
      LOOM_LOG(INFO) << "stopped at step " << step_ << " of " << total << " (" << stop_reason_
                     << ") after " << FormatDuration(progress_->elapsed_s());
      return absl::OkStatus();
    }
    Timer timer;
    const int64_t syncs_before = device_->host_syncs();
    LOOM_ASSIGN_OR_RETURN(float loss, Step());
    const int64_t syncs = device_->host_syncs() - syncs_before;
    step_host_syncs_ += syncs;
    max_step_host_syncs_ = std::max(max_step_host_syncs_, syncs);
    const GptModel::CommTimes ct = model_->TakeCommTimes();
    CommSeconds comm;
    comm.tp = ct.tp_seconds;
    comm.sp = ct.sp_seconds;
    comm.pp = pipeline_->TakeTimes().exchange_s;
    progress_->AddStep(timer.Seconds(), comm);
    if (step_ == 1) {
      LOOM_LOG(INFO) << "activations: "
                     << absl::StrFormat("%.1f MiB", model_->activation_bytes() / 1048576.0)
                     << " per rank at micro-batch " << config_.parallel().micro_batch_size()
                     << " x " << config_.data().seq_len() << " (tp " << numbers_.tp
                     << ", sequence parallel " << (model_->sequence_parallel() ? "on" : "off")
                     << ", recompute " << RecomputeName(model_->recompute()) << "; "
                     << model_->slots_allocated() << " micro-batch slot(s) of "
                     << absl::StrFormat("%.1f MiB", model_->slot_bytes() / 1048576.0 /
                                                        std::max(1, model_->slots_allocated()))
                     << " at the peak)";
    }
    std::optional<float> val;
    if (val_data_ && eval_every > 0 && (step_ % eval_every == 0 || step_ == total)) {
      LOOM_ASSIGN_OR_RETURN(val, Evaluate());
    }
    LOOM_RETURN_IF_ERROR(LogStep(loss, val));
    LOOM_RETURN_IF_ERROR(CheckpointAfterStep());
    // The tensor group of the first replica samples together (its ranks hold vocab slices),
    // with every pipeline stage of that replica.
    if (sample_every > 0 && tokenizer_ && groups_->coord().dp == 0 &&
        (step_ % sample_every == 0 || step_ == total)) {
      LOOM_ASSIGN_OR_RETURN(std::vector<int32_t> out,
                            Sample({tokenizer_->eot()}, config_.logging().sample_length()));
      if (groups_->coord().pp == 0) {
        LOOM_LOG(INFO) << "sample at step " << step_ << ":\n" << tokenizer_->DecodeForDisplay(out);
      }
    }
  }
  LOOM_RETURN_IF_ERROR(CheckpointAtStop());
  if (step_ < config_.lr_schedule().total_steps()) {
    // runtime.stop_at_step: the run is not done, only this part of it.
    LOOM_LOG(INFO) << "stopped at step " << step_ << " of " << config_.lr_schedule().total_steps()
                   << " (runtime.stop_at_step) after " << FormatDuration(progress_->elapsed_s());
  } else {
    LOOM_LOG(INFO) << "done: " << step_ << " steps in " << FormatDuration(progress_->elapsed_s());
  }
  // The host's waits on the device inside the steps (the copies and synchronisations that stop
  // a GPU's host from running ahead): at most kHostSyncsPerStep each.
  if (!device_->host_memory()) {
    const std::string waits = absl::StrCat(
        "host waits on ", device_->Name(), ": ", step_host_syncs_, " in ", progress_->steps_timed(),
        " step(s), at most ", max_step_host_syncs_, " in one (budget ", kHostSyncsPerStep, ")");
    // Over the budget on any rank (the last pipeline stage reads the losses) is said by that rank.
    if (max_step_host_syncs_ > kHostSyncsPerStep) {
      LOOM_LOG_ALL_RANKS(WARNING) << waits;
    } else {
      LOOM_LOG(INFO) << waits;
    }
  }
  return absl::OkStatus();
}

}  // namespace loom
