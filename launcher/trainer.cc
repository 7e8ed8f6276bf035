#include "launcher/trainer.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/roofline.h"
#include "launcher/lr_schedule.h"
#include "model/model_file.h"
#include "ops/optimizer.h"
#include "runtime/logging.h"
#include "runtime/philox.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom {

GptConfig GptConfigFromJob(const JobConfig& job) {
  const ModelConfig& m = job.model();
  GptConfig c;
  c.family = m.family() == ModelConfig::LLAMA ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = m.layers();
  c.heads = m.heads();
  c.kv_heads = m.kv_heads() > 0 ? m.kv_heads() : m.heads();
  c.hidden = m.hidden();
  c.ffn_hidden = m.ffn_hidden();
  c.vocab = m.vocab();
  c.padded_vocab = PaddedVocab(job);
  c.max_seq = m.max_seq();
  c.tied_embeddings = m.tied_embeddings();
  c.norm_eps = static_cast<float>(m.norm_eps());
  c.rope_theta = static_cast<float>(m.rope_theta());
  return c;
}

namespace {

absl::StatusOr<Device*> ChooseDevice(const JobConfig& job) {
  switch (job.runtime().backend()) {
    case RuntimeConfig::CPU:
      return CpuDevice();
    case RuntimeConfig::CUDA:
      return CudaDevice(0);
    default:
      if (CudaDeviceCount() > 0) return CudaDevice(0);
      return CpuDevice();
  }
}

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

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const JobConfig& config,
                                                         MpiWorld* world) {
  std::unique_ptr<Trainer> t(new Trainer());
  t->config_ = config;
  t->world_ = world;
  LOOM_ASSIGN_OR_RETURN(t->numbers_, DeriveNumbers(config, world->size()));
  const DerivedNumbers& n = t->numbers_;
  if (n.tp > 1 || n.pp > 1) {
    return absl::UnimplementedError(absl::StrCat(
        "parallel.tp = ", n.tp, " and parallel.pp = ", n.pp,
        ": this trainer runs data parallelism only so far (tp = pp = 1)"));
  }
  if (!config.checkpoint().dir().empty()) {
    return absl::UnimplementedError(absl::StrCat(
        "checkpoint.dir = \"", config.checkpoint().dir(),
        "\": this build cannot save checkpoints yet; clear the field to train without them"));
  }
  SetLogRankInfo(world->rank(), world->rank(), 0, 0);
  if (config.runtime().threads_per_rank() > 0) {
    omp_set_num_threads(config.runtime().threads_per_rank());
    openblas_set_num_threads(config.runtime().threads_per_rank());
  }
  LOOM_ASSIGN_OR_RETURN(t->device_, ChooseDevice(config));
  const bool bf16 = config.precision() == JobConfig::BF16;
  if (bf16 && !t->device_->is_cuda()) {
    return absl::InvalidArgumentError(
        "precision: BF16 needs the CUDA backend; the CPU backend computes in FP32");
  }

  // Data first: a missing or bad shard is reported before the model takes any memory.
  DataLoaderOptions opts;
  opts.patterns = {config.data().train()};
  opts.format = config.data().format() == DataConfig::RAW_U16 ? ShardFormat::kRawU16
                                                               : ShardFormat::kLlmc;
  opts.vocab_size = config.model().vocab();
  opts.seq_len = config.data().seq_len();
  opts.seed = static_cast<uint64_t>(config.data().seed());
  opts.shuffle = config.data().shuffle();
  opts.dp_rank = world->rank();
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
      return absl::Status(data.status().code(), absl::StrCat("data.val: ", data.status().message()));
    }
    t->val_data_ = std::move(*data);
  }
  t->tokenizer_ = FindTokenizer(*t->train_data_);

  const GptConfig gpt = GptConfigFromJob(config);
  std::optional<LoadedWeights> init;
  if (!config.model().init_from().empty()) {
    auto w = ReadModelFile(config.model().init_from());
    if (!w.ok()) {
      return absl::Status(w.status().code(),
                          absl::StrCat("model.init_from: ", w.status().message()));
    }
    LOOM_RETURN_IF_ERROR(CheckSameShape(gpt, w->config, config.model().init_from()));
    init = std::move(*w);
  }
  LOOM_ASSIGN_OR_RETURN(t->model_,
                        GptModel::Create(gpt, t->device_, bf16 ? DType::kBF16 : DType::kF32));
  if (bf16) {
    LOOM_ASSIGN_OR_RETURN(t->master_, Tensor::Empty(Shape{t->model_->layout().total()},
                                                    DType::kF32, t->device_));
  } else {
    t->master_ = t->model_->params();
  }
  if (init) {
    LOOM_RETURN_IF_ERROR(t->master_.CopyFromFloats(init->params));
  } else {
    LOOM_RETURN_IF_ERROR(InitParams(t->model_->layout(),
                                    static_cast<uint64_t>(config.runtime().seed()), t->master_));
  }
  if (bf16) LOOM_RETURN_IF_ERROR(ops::Cast(t->master_, t->model_->params()));
  AdamWSettings adam;
  adam.beta1 = static_cast<float>(config.optimizer().beta1());
  adam.beta2 = static_cast<float>(config.optimizer().beta2());
  adam.eps = static_cast<float>(config.optimizer().eps());
  adam.weight_decay = static_cast<float>(config.optimizer().weight_decay());
  LOOM_ASSIGN_OR_RETURN(AdamW opt, AdamW::Create(t->model_->layout(), adam, t->device_));
  t->optimizer_ = std::move(opt);
  LOOM_ASSIGN_OR_RETURN(t->norm_acc_, Tensor::Zeros(Shape{1}, DType::kF32, t->device_));

  const std::string& run_dir = config.logging().run_dir();
  if (world->rank() == 0 && !run_dir.empty()) {
    if (config.logging().jsonl()) {
      LOOM_ASSIGN_OR_RETURN(t->metrics_, MetricsLogger::Create(run_dir));
    }
    if (config.logging().tensorboard()) {
      LOOM_ASSIGN_OR_RETURN(t->tensorboard_, TensorBoardWriter::Create(run_dir));
    }
  }
  const int T = config.data().seq_len();
  t->flops_per_token_ = TrainingFlopsPerToken(gpt, n.parameters, T);
  // MFU's denominator: the device's GEMM peak (measured sgemm on the CPU), or none (MFU is then
  // not reported) for a GPU loom has no figures for.
  auto roof = bench::GetRoofline(t->device_);
  std::string peak_source = roof.ok() ? roof->description : std::string(roof.status().message());
  t->peak_flops_ = roof.ok() ? roof->flops * world->size() : 0.0;
  peak_source = peak_source.substr(0, peak_source.find('\n'));  // the compute line only
  const int64_t micro = config.parallel().micro_batch_size();
  t->inputs_.resize(micro * T);
  t->targets_.resize(micro * T);

  LOOM_LOG(INFO) << "model: " << (gpt.is_llama() ? "LLaMA" : "GPT-2") << ", " << gpt.layers
                 << " layers, hidden " << gpt.hidden << ", " << gpt.heads << " heads ("
                 << gpt.kv_heads << " kv), vocab " << gpt.vocab << " (padded " << gpt.padded_vocab
                 << "), " << n.parameters << " parameters, on " << t->device_->Name();
  LOOM_LOG(INFO) << "data: " << t->train_data_->num_tokens() << " training tokens in "
                 << t->train_data_->shards().size() << " shard(s), "
                 << t->train_data_->num_samples() << " sequences of " << T << "; " << n.dp
                 << " data-parallel rank(s), " << n.grad_accum_steps
                 << " micro-batch(es) of " << micro << " per step, " << n.tokens_per_step
                 << " tokens per step";
  LOOM_LOG(INFO) << "MFU counts 6N + 6*L*C*T = " << absl::StrFormat("%.3g", t->flops_per_token_)
                 << " flop/token against a peak of " << absl::StrFormat("%.3g", t->peak_flops_)
                 << " flop/s (" << peak_source << ")";
  return t;
}

absl::Status Trainer::AllReduceGrads() {
  if (world_->size() == 1) return absl::OkStatus();
  if (!device_->is_cpu()) {
    return absl::UnimplementedError("data parallelism on CUDA needs the NCCL communicator");
  }
  const Tensor& g = model_->grads();
  LOOM_RETURN_IF_ERROR(
      world_->AllReduceSum(absl::MakeSpan(g.data_as<float>(), static_cast<size_t>(g.numel()))));
  return ops::Scale(g, 1.0f / static_cast<float>(world_->size()));
}

absl::StatusOr<double> Trainer::GradNorm() {
  LOOM_RETURN_IF_ERROR(norm_acc_.Fill0());
  LOOM_RETURN_IF_ERROR(ops::SumOfSquaresAccumulate(model_->grads(), norm_acc_));
  LOOM_ASSIGN_OR_RETURN(std::vector<float> v, norm_acc_.ToFloatVector());
  return std::sqrt(static_cast<double>(v[0]));
}

absl::StatusOr<float> Trainer::Step() {
  const int micro = config_.parallel().micro_batch_size();
  const int T = config_.data().seq_len();
  const int64_t accum = numbers_.grad_accum_steps;
  LOOM_RETURN_IF_ERROR(model_->ZeroGrads());
  double loss_sum = 0;
  for (int64_t k = 0; k < accum; ++k) {
    LOOM_RETURN_IF_ERROR(train_data_->NextBatch(micro, absl::MakeSpan(inputs_),
                                                absl::MakeSpan(targets_)));
    Tensor in = Tensor::View(inputs_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    Tensor tg = Tensor::View(targets_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    LOOM_ASSIGN_OR_RETURN(float loss,
                          model_->ForwardBackward(in, tg, 1.0f / static_cast<float>(accum)));
    loss_sum += loss;
  }
  LOOM_RETURN_IF_ERROR(AllReduceGrads());
  double loss_mean[1] = {loss_sum / static_cast<double>(accum)};
  LOOM_RETURN_IF_ERROR(world_->AllReduceSum(absl::MakeSpan(loss_mean, 1)));
  loss_mean[0] /= world_->size();
  LOOM_ASSIGN_OR_RETURN(last_grad_norm_, GradNorm());
  // Checked before the optimizer touches the weights: a poisoned update must never be applied.
  if (!std::isfinite(loss_mean[0]) || !std::isfinite(last_grad_norm_)) {
    return absl::InternalError(absl::StrCat("training loss is ", loss_mean[0], ", gradient norm ",
                                            last_grad_norm_, " at step ", step_ + 1,
                                            ": the run diverged (lower optimizer.lr?)"));
  }
  const double clip = config_.optimizer().grad_clip();
  float grad_scale = 1.0f;
  if (clip > 0 && last_grad_norm_ > clip) grad_scale = static_cast<float>(clip / last_grad_norm_);
  const float lr = static_cast<float>(LearningRate(config_, step_));
  ++step_;
  LOOM_RETURN_IF_ERROR(
      optimizer_->Step(master_, model_->grads(), lr, step_, grad_scale,
                       model_->dtype() == DType::kF32 ? nullptr : &model_->params()));
  return static_cast<float>(loss_mean[0]);
}

absl::StatusOr<float> Trainer::Evaluate() {
  if (!val_data_) return absl::FailedPreconditionError("no validation data (data.val is empty)");
  const int micro = config_.parallel().micro_batch_size();
  const int T = config_.data().seq_len();
  val_data_->Rewind();
  double sum[1] = {0};
  const int batches = config_.logging().eval_batches();
  for (int k = 0; k < batches; ++k) {
    LOOM_RETURN_IF_ERROR(
        val_data_->NextBatch(micro, absl::MakeSpan(inputs_), absl::MakeSpan(targets_)));
    Tensor in = Tensor::View(inputs_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    Tensor tg = Tensor::View(targets_.data(), Shape{micro, T}, DType::kI32, CpuDevice());
    LOOM_ASSIGN_OR_RETURN(float loss, model_->ForwardBackward(in, tg, 1.0f, /*backward=*/false));
    sum[0] += loss;
  }
  LOOM_RETURN_IF_ERROR(world_->AllReduceSum(absl::MakeSpan(sum, 1)));
  return static_cast<float>(sum[0] / (static_cast<double>(batches) * world_->size()));
}

absl::StatusOr<std::vector<int32_t>> Trainer::Sample(const std::vector<int32_t>& prompt,
                                                     int length) {
  const int T = config_.data().seq_len();
  const int64_t V = model_->config().vocab, Vp = model_->config().padded_vocab;
  std::vector<int32_t> seq = prompt;
  if (seq.empty()) return absl::InvalidArgumentError("sampling needs a non-empty prompt");
  const uint64_t seed = static_cast<uint64_t>(config_.runtime().seed()) * 1000003ull + step_;
  constexpr int kTopK = 40;
  std::vector<int32_t> window(T, 0);
  for (int i = 0; i < length && static_cast<int>(seq.size()) < T + 1; ++i) {
    const int len = std::min<int>(static_cast<int>(seq.size()), T);
    std::copy(seq.end() - len, seq.end(), window.begin());
    Tensor in = Tensor::View(window.data(), Shape{1, T}, DType::kI32, CpuDevice());
    LOOM_ASSIGN_OR_RETURN(Tensor logits, model_->Forward(in));
    LOOM_ASSIGN_OR_RETURN(Tensor row, logits.Slice(len - 1, len).Reshape(Shape{Vp}));
    LOOM_ASSIGN_OR_RETURN(std::vector<float> l, row.ToFloatVector());
    // Top-k: softmax over the k largest real-vocab logits, then one Philox uniform draw.
    std::vector<int32_t> ids(V);
    for (int64_t v = 0; v < V; ++v) ids[v] = static_cast<int32_t>(v);
    const int k = std::min<int64_t>(kTopK, V);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    std::vector<double> p(k);
    double total = 0;
    for (int j = 0; j < k; ++j) total += p[j] = std::exp(l[ids[j]] - l[ids[0]]);
    double u = UniformAt(seed, static_cast<uint64_t>(i)) * total;
    int pick = k - 1;
    for (int j = 0; j < k; ++j) {
      if ((u -= p[j]) <= 0) {
        pick = j;
        break;
      }
    }
    seq.push_back(ids[pick]);
  }
  return std::vector<int32_t>(seq.begin() + prompt.size(), seq.end());
}

absl::Status Trainer::LogStep(float loss, std::optional<float> val_loss, double step_seconds) {
  interval_seconds_ += step_seconds;
  interval_tokens_ += numbers_.tokens_per_step;
  const int64_t total = numbers_.steps_this_run;
  const bool last = step_ == total;
  const int interval = std::max(1, config_.logging().interval());
  if (step_ % interval != 0 && !last && !val_loss) return absl::OkStatus();
  StepMetrics m;
  m.step = step_;
  m.loss = loss;
  m.lr = LearningRate(config_, step_ - 1);
  m.grad_norm = last_grad_norm_;
  m.tokens_per_s = interval_seconds_ > 0 ? interval_tokens_ / interval_seconds_ : 0;
  if (peak_flops_ > 0) m.mfu = m.tokens_per_s * flops_per_token_ / peak_flops_;
  m.peak_bytes = static_cast<int64_t>(device_->allocator().stats().peak_bytes);
  if (val_loss) m.val_loss = *val_loss;
  interval_seconds_ = 0;
  interval_tokens_ = 0;
  const double eta = elapsed_s_ / std::max<int64_t>(1, step_) * (total - step_);
  LOOM_LOG(INFO) << FormatConsoleLine(m, total, elapsed_s_, eta);
  if (metrics_) LOOM_RETURN_IF_ERROR(metrics_->Log(m));
  if (tensorboard_) LOOM_RETURN_IF_ERROR(tensorboard_->WriteScalars(step_, TensorBoardScalars(m)));
  return absl::OkStatus();
}

absl::Status Trainer::Run() {
  const int64_t total = numbers_.steps_this_run;
  const int eval_every = config_.logging().eval_interval();
  const int sample_every = config_.logging().sample_interval();
  while (step_ < total) {
    Timer timer;
    LOOM_ASSIGN_OR_RETURN(float loss, Step());
    const double seconds = timer.Seconds();
    elapsed_s_ += seconds;
    std::optional<float> val;
    if (val_data_ && eval_every > 0 && (step_ % eval_every == 0 || step_ == total)) {
      LOOM_ASSIGN_OR_RETURN(val, Evaluate());
    }
    LOOM_RETURN_IF_ERROR(LogStep(loss, val, seconds));
    if (sample_every > 0 && tokenizer_ && world_->rank() == 0 &&
        (step_ % sample_every == 0 || step_ == total)) {
      LOOM_ASSIGN_OR_RETURN(std::vector<int32_t> out,
                            Sample({tokenizer_->eot()}, config_.logging().sample_length()));
      LOOM_LOG(INFO) << "sample at step " << step_ << ":\n" << tokenizer_->DecodeForDisplay(out);
    }
  }
  LOOM_LOG(INFO) << "done: " << step_ << " steps in " << FormatDuration(elapsed_s_);
  return absl::OkStatus();
}

}  // namespace loom
