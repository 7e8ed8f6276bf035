// The pieces Trainer::Create assembles, each built by its own function in the order Create
// calls them: the data (before anything large is allocated), the model and its pipeline
// runner, the gradient reducer and the optimizer, the metrics sinks.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "model/hf_format.h"
#include "model/model_file.h"
#include "ops/optimizer.h"
#include "parallel/distributed_optimizer.h"
#include "parallel/grad_reducer.h"
#include "runtime/logging.h"
#include "runtime/status.h"
#include "train/trainer.h"

namespace loom {
namespace {

// tokenizer.json beside the training shards, if `data prepare` wrote one.
std::optional<ByteTokenizer> FindTokenizer(const DataLoader& data) {
  if (data.shards().empty()) return std::nullopt;
  std::filesystem::path dir = std::filesystem::path(data.shards()[0]->path()).parent_path();
  std::filesystem::path desc = dir / "tokenizer.json";
  if (!std::filesystem::exists(desc)) return std::nullopt;
  auto tok = LoadTokenizer(desc.string());
  if (!tok.ok()) {
    LOOM_LOG(WARNING) << "not decoding samples: " << tok.status().message();
    return std::nullopt;
  }
  return *tok;
}

}  // namespace

absl::Status Trainer::BuildData() {
  Trainer* t = this;
  const JobConfig& config = config_;
  const JobLayout& n = numbers_;
  const GridCoord& coord = groups_->coord();
  // Data first: a missing or bad shard is reported before the model takes any memory.
  DataLoaderOptions opts;
  opts.patterns = {config.data().train()};
  opts.format =
      config.data().format() == DataConfig::RAW_U16 ? ShardFormat::kRawU16 : ShardFormat::kLlmc;
  opts.vocab_size = config.model().vocab();
  opts.seq_len = config.data().seq_len();
  opts.seed = static_cast<uint64_t>(config.data().seed());
  opts.shuffle = config.data().shuffle();
  opts.dp_rank = coord.dp;
  opts.dp_size = n.dp;
  {
    auto data = DataLoader::Open(opts);
    if (!data.ok()) {
      return absl::Status(data.status().code(),
                          absl::StrCat("data.train: ", data.status().message()));
    }
    t->train_data_ = std::move(*data);
  }
  if (!config.data().val().empty()) {
    opts.patterns = {config.data().val()};
    opts.shuffle = false;
    auto data = DataLoader::Open(opts);
    if (!data.ok()) {
      return absl::Status(data.status().code(),
                          absl::StrCat("data.val: ", data.status().message()));
    }
    t->val_data_ = std::move(*data);
  }
  t->tokenizer_ = FindTokenizer(*t->train_data_);

  return absl::OkStatus();
}

absl::Status Trainer::BuildModel(std::optional<std::vector<float>>* init,
                                 bool* init_from_checkpoint) {
  Trainer* t = this;
  const JobConfig& config = config_;
  const JobLayout& n = numbers_;
  const GridCoord& coord = groups_->coord();
  const GptConfig& gpt = n.model;
  const bool bf16 = n.bf16;
  // A step directory (a checkpoint) gives weights only, loaded once the optimizer exists. A
  // model file or a Hugging Face directory is opened (headers only) and checked against the
  // job's model here; this rank's slices are read once its table exists.
  const std::string& init_from = config.model().init_from();
  std::error_code dir_ec;
  *init_from_checkpoint = !init_from.empty() && std::filesystem::is_directory(init_from, dir_ec) &&
                          !IsHfModelDir(init_from);
  std::unique_ptr<ModelFileReader> reader;
  if (!init_from.empty() && !*init_from_checkpoint) {
    auto opened = ModelFileReader::Open(init_from);
    if (!opened.ok()) {
      return absl::Status(opened.status().code(),
                          absl::StrCat("model.init_from: ", opened.status().message()));
    }
    LOOM_RETURN_IF_ERROR(CheckSameShape(gpt, (*opened)->config(), init_from));
    // The numerics are no shape: the job's values are used, but a file that says otherwise
    // (a HF config.json's rope_theta, rms_norm_eps) was trained with another model.
    const GptConfig& file = (*opened)->config();
    for (const std::string& d :
         GptConfigDifferences(gpt, file, "job has", "file has",
                              /*with_padding=*/false, /*with_numerics=*/true)) {
      if (absl::StartsWith(d, "model.norm_eps") || absl::StartsWith(d, "model.rope_theta")) {
        LOOM_LOG(WARNING) << "model.init_from " << init_from << ": " << d
                          << " (the job's value is used: set it as the file says)";
      }
    }
    reader = std::move(*opened);
  }
  TensorParallelism tpar;
  tpar.tp = &t->groups_->tp();
  tpar.sequence_parallel = n.sequence_parallel;
  // This rank's pipeline stage: its model chunks (the whole model when pp == 1).
  GptStage stage;
  if (n.pp > 1) stage = PipelineStageOf(n.pp, coord.pp, n.chunk_layers);
  const Recompute recompute = n.recompute;
  LOOM_ASSIGN_OR_RETURN(
      t->model_,
      GptModel::Create(gpt, t->device_, bf16 ? DType::kBF16 : DType::kF32, tpar, stage, recompute));
  const ParamTable& table = t->model_->layout();
  if (reader != nullptr) {
    auto slices = ReadModelSlices(*reader, gpt, table);
    if (!slices.ok()) {
      return absl::Status(slices.status().code(),
                          absl::StrCat("model.init_from: ", slices.status().message()));
    }
    *init = std::move(*slices);
    LOOM_LOG(INFO) << "model.init_from: " << reader->format() << " " << init_from << " (vocab "
                   << gpt.vocab << ": " << reader->config().padded_vocab << " rows stored, "
                   << gpt.padded_vocab << " in the job); " << table.total()
                   << " values read for this rank";
  }
  // One step path: without pipeline stages the model is a one-stage pipeline, whose 1F1B
  // schedule is forward then backward of each micro-batch in turn.
  LOOM_ASSIGN_OR_RETURN(t->pipeline_, PipelineRunner::Create(t->model_.get(), &t->groups_->pp(),
                                                             n.schedule, n.pipeline_shape()));
  if (n.pp > 1) {
    // A tied embedding lives on the first and the last stage: its gradient is final only once
    // both copies' gradients are summed, after the schedule.
    if (gpt.tied_embeddings) {
      for (size_t i = 0; i < table.specs().size(); ++i) {
        if (table.specs()[i].name == "wte.weight") t->tied_index_ = static_cast<int>(i);
      }
    }
    std::string chunks;
    for (const GptStage::Chunk& ch : t->model_->stage().chunks) {
      absl::StrAppend(&chunks, chunks.empty() ? "" : ", ", "[", ch.first_layer, ", ",
                      ch.first_layer + ch.layers, ")");
    }
    LOOM_LOG(INFO) << "pipeline stage " << coord.pp << " of " << n.pp << " ("
                   << PipelineScheduleName(n.schedule) << ", " << n.grad_accum_steps
                   << " micro-batches): layers " << chunks
                   << (t->model_->stage().embedding ? ", embedding" : "")
                   << (t->model_->stage().head ? ", head and loss" : "") << "; " << table.total()
                   << " parameters here";
  }
  return absl::OkStatus();
}

absl::Status Trainer::BuildOptimizer() {
  Trainer* t = this;
  const ParamTable& table = model_->layout();
  const JobConfig& config = config_;
  const JobLayout& n = numbers_;
  // Gradients are reduced over dp in buckets, in backward order, each as soon as the model
  // reports its last gradient final; with the distributed optimizer by reduce-scatter (ZeRO-1).
  GradReducer::Options ro;
  ro.bucket_bytes = static_cast<int64_t>(config.parallel().grad_bucket_mb() * (1 << 20));
  ro.shard = n.distributed_optimizer;
  // LOOM_DP_PROGRESS_US: the reducer's CPU progress-thread period, 0 = off (for benchmarks).
  if (const char* us = std::getenv("LOOM_DP_PROGRESS_US"); us != nullptr) {
    if (!absl::SimpleAtoi(us, &ro.progress_interval_us) || ro.progress_interval_us < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LOOM_DP_PROGRESS_US must be a number of microseconds >= 0 (0 = no progress thread), "
          "got \"",
          us, "\""));
    }
  }
  // ZeRO-1: the buffers padded so every bucket divides into equal shards (one reduce-scatter and
  // one all-gather per bucket); the reducer and the optimizer see the padded storage.
  if (ro.shard) LOOM_RETURN_IF_ERROR(t->model_->PadBuffers(n.dp));
  LOOM_ASSIGN_OR_RETURN(
      t->reducer_, GradReducer::Create(table, t->model_->grads_storage(), t->groups_->dp(), ro));
  GradReducer* reducer = t->reducer_.get();
  const int tied = t->tied_index_;
  t->model_->set_grad_ready_hook([reducer, tied](int i) {
    if (i == tied) return absl::OkStatus();  // after the embedding group's sum
    LOOM_RETURN_IF_ERROR(reducer->MarkReady(i));
    return reducer->Poll();
  });
  AdamWSettings adam;
  adam.beta1 = static_cast<float>(config.optimizer().beta1());
  adam.beta2 = static_cast<float>(config.optimizer().beta2());
  adam.eps = static_cast<float>(config.optimizer().eps());
  adam.weight_decay = static_cast<float>(config.optimizer().weight_decay());
  if (ro.shard) {
    LOOM_ASSIGN_OR_RETURN(
        t->optimizer_, CreateDistributedOptimizer(
                           table, adam, t->device_, t->groups_->dp(), t->model_->params_storage(),
                           t->model_->grads_storage(), reducer->BucketRanges()));
  } else {
    LOOM_ASSIGN_OR_RETURN(
        t->optimizer_,
        CreatePlainOptimizer(table, adam, t->device_, t->model_->params(), t->model_->grads()));
  }
  return absl::OkStatus();
}

absl::Status Trainer::OpenSinks() {
  Trainer* t = this;
  const JobConfig& config = config_;
  const std::string& run_dir = config.logging().run_dir();
  if (world_->rank() == 0 && !run_dir.empty()) {
    RunDirOptions sinks;
    sinks.jsonl = config.logging().jsonl();
    sinks.tensorboard = config.logging().tensorboard();
    sinks.overwrite = config.logging().overwrite();
    if (!t->resumed_from_.empty()) sinks.resume_step = t->step_;
    sinks.run_id = t->run_id_;
    LOOM_ASSIGN_OR_RETURN(t->sinks_, MetricsSinks::Open(run_dir, sinks));
  }
  return absl::OkStatus();
}

}  // namespace loom
