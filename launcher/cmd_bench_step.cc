// `loom bench step --config F [--set ...] [--steps N] [--warmup N]`: times whole training steps
// (forward, backward, AdamW) of the job's model on random tokens, single process, and prints
// ms/step, tokens/s, the achieved FLOP rate against the device's peak (for the CPU, the sgemm
// rate it measures itself) and a breakdown by op family.
#include <cstdio>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "job/config.h"
#include "job/memory_estimate.h"
#include "launcher/command.h"
#include "model/gpt.h"
#include "ops/linear.h"
#include "ops/roofline.h"
#include "parallel/adamw.h"
#include "parallel/distributed_optimizer.h"
#include "plan/gpu_presets.h"
#include "runtime/cuda_device_choice.h"
#include "runtime/files.h"
#include "runtime/philox.h"
#include "runtime/profiler.h"
#include "runtime/status.h"
#include "runtime/timer.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Times training steps of the job's model (one micro-batch of parallel.micro_batch_size x\n"
    "data.seq_len random tokens per step, forward + backward + AdamW) on one process and\n"
    "prints ms/step, tokens/s, FLOP rate vs the device peak and a per-op-family breakdown.";

absl::Status RunBenchStep(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> overrides;
  int steps = 3, warmup = 1;
  std::string calibration_out;
  FlagSet flags("loom bench step", kDescription);
  flags.JobFlags(&path, &overrides);
  flags.String("--calibration-out", &calibration_out, "FILE",
               "write the measured FLOP rate against the peak for `loom plan --calibration`");
  flags.Int("--steps", &steps, "N", "timed steps").AtLeast(1);
  flags.Int("--warmup", &warmup, "N", "untimed steps first").AtLeast(0);
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(JobConfig config, LoadJobConfig(path, overrides));
  LOOM_RETURN_IF_ERROR(ValidateJobConfig(config, /*world_size=*/1));
  const GptConfig gpt = GptConfigFromJob(config);
  Device* device = CpuDevice();
  if (config.runtime().backend() == RuntimeConfig::CUDA ||
      (config.runtime().backend() == RuntimeConfig::AUTO && CudaDeviceCount() > 0)) {
    // The device this process's place on the node gives it (runtime/cuda_device_choice.h).
    LOOM_ASSIGN_OR_RETURN(int index, ChooseCudaDevice(LocalPlacementFromEnv(), CudaDeviceCount(),
                                                      CudaUnavailableReason()));
    LOOM_ASSIGN_OR_RETURN(device, CudaDevice(index));
  }
  // The job's precision, as `loom train` runs it: bf16 weights and activations with fp32
  // master weights in the optimizer, or fp32 throughout.
  const bool bf16 = config.precision() == JobConfig::BF16;
  if (bf16 && device->is_cpu()) {
    return absl::InvalidArgumentError(
        "precision BF16 needs the CUDA backend (the CPU backend computes in fp32)");
  }
  const DType dtype = bf16 ? DType::kBF16 : DType::kF32;
  ops::SetTf32ForFp32Gemms(config.runtime().tf32());
  LOOM_ASSIGN_OR_RETURN(auto model, GptModel::Create(gpt, device, dtype));
  LOOM_ASSIGN_OR_RETURN(auto opt, CreatePlainOptimizer(model->layout(), AdamWSettings{}, device,
                                                       model->params(), model->grads()));
  {
    std::vector<float> weights(model->layout().total());
    LOOM_RETURN_IF_ERROR(InitParams(
        model->layout(), static_cast<uint64_t>(config.runtime().seed()),
        Tensor::View(weights.data(), Shape{model->layout().total()}, DType::kF32, CpuDevice())));
    LOOM_ASSIGN_OR_RETURN(Tensor full,
                          Tensor::Empty(Shape{model->layout().total()}, DType::kF32, device));
    LOOM_RETURN_IF_ERROR(full.CopyFromFloats(weights));
    LOOM_RETURN_IF_ERROR(opt->LoadWeights(full));
  }
  if (!device->is_cpu()) device->allocator().EmptyCache();  // init's temporaries
  device->allocator().ResetPeak();
  const int B = config.parallel().micro_batch_size(), T = config.data().seq_len();
  std::vector<int32_t> tokens(B * (T + 1));
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int32_t>(UniformAt(7, i) * gpt.vocab) % static_cast<int32_t>(gpt.vocab);
  }
  std::vector<int32_t> in(B * T), tg(B * T);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      in[b * T + t] = tokens[b * (T + 1) + t];
      tg[b * T + t] = tokens[b * (T + 1) + t + 1];
    }
  }
  Tensor tin = Tensor::View(in.data(), Shape{B, T}, DType::kI32, CpuDevice());
  Tensor ttg = Tensor::View(tg.data(), Shape{B, T}, DType::kI32, CpuDevice());
  LOOM_ASSIGN_OR_RETURN(const bench::Roofline peak, bench::GetRoofline(device));
  const int64_t params = ParameterCount(config.model());
  const double flops_per_step = TrainingFlopsPerToken(gpt, params, T) * B * T;

  std::printf("bench step: %s, %d layers, C=%d, %d heads, V=%lld, B=%d, T=%d, %s on %s\n",
              gpt.is_llama() ? "LLaMA" : "GPT-2", gpt.layers, gpt.hidden, gpt.heads,
              static_cast<long long>(gpt.vocab), B, T, bf16 ? "bf16" : "fp32",
              device->Name().c_str());
  std::printf("  model: %lld parameters; a step is %.1f GFLOP (6N + 6*L*C*T per token)\n",
              static_cast<long long>(params), flops_per_step / 1e9);
  std::printf("  device peak: %.1f GFLOP/s (%s)\n", peak.flops / 1e9, peak.description.c_str());
  auto one_step = [&](int64_t step) -> absl::Status {
    LOOM_RETURN_IF_ERROR(model->ZeroGrads());
    LOOM_ASSIGN_OR_RETURN(float loss, model->ForwardBackward(tin, ttg, 1.0f));
    (void)loss;
    OpProfiler::Scope scope("optimizer", device);
    return opt->Step(1e-4f, step, 1.0f);
  };
  for (int i = 0; i < warmup; ++i) LOOM_RETURN_IF_ERROR(one_step(i + 1));
  LOOM_RETURN_IF_ERROR(device->Synchronize());
  Timer timer;
  for (int i = 0; i < steps; ++i) LOOM_RETURN_IF_ERROR(one_step(warmup + i + 1));
  LOOM_RETURN_IF_ERROR(device->Synchronize());
  const double s = timer.Seconds() / std::max(1, steps);
  // A second, profiled pass for the breakdown (synchronising per op distorts GPU totals a bit).
  OpProfiler::Reset();
  OpProfiler::Enable(true);
  for (int i = 0; i < std::max(1, steps); ++i)
    LOOM_RETURN_IF_ERROR(one_step(warmup + steps + i + 1));
  OpProfiler::Enable(false);
  std::printf("  %.1f ms/step, %.0f tokens/s, %.1f GFLOP/s = %.0f%% of the device peak (MFU)\n",
              s * 1e3, B * T / s, flops_per_step / s / 1e9,
              peak.flops > 0 ? 100.0 * flops_per_step / s / peak.flops : 0.0);
  if (!calibration_out.empty()) {
    // What `loom plan` assumes as achievable: this step's model FLOP rate over the peak it is
    // measured against (plan/gpu_presets.h).
    Calibration c;
    c.part =
        absl::StrCat(device->Name(), ": ", peak.description.substr(0, peak.description.find('\n')));
    c.peak_tflops = peak.flops / 1e12;
    c.achieved_tflops = flops_per_step / s / 1e12;
    c.efficiency = peak.flops > 0 ? flops_per_step / s / peak.flops : 0;
    c.job = absl::StrFormat("%s (%s, %d layers, C=%d, %d heads, V=%lld, B=%d, T=%d, %s)", path,
                            gpt.is_llama() ? "LLaMA" : "GPT-2", gpt.layers, gpt.hidden, gpt.heads,
                            static_cast<long long>(gpt.vocab), B, T, bf16 ? "bf16" : "fp32");
    LOOM_RETURN_IF_ERROR(AtomicWriteFile(calibration_out, FormatCalibration(c)));
    std::printf("  calibration: %s (efficiency %.3f of the peak)\n", calibration_out.c_str(),
                c.efficiency);
  }
  // The allocator's peak over the timed steps against loom's own estimate of the same job
  // (job/memory_estimate.h, one rank), so a GPU run checks the estimate the job check and
  // `loom plan` rely on.
  const double peak_b = static_cast<double>(device->allocator().stats().peak_bytes);
  auto layout = JobLayout::Create(config, 1);
  auto est = layout.ok() ? EstimateMemoryPerRank(*layout)
                         : absl::StatusOr<MemoryEstimate>(layout.status());
  if (est.ok()) {
    std::printf(
        "  memory: allocator peak %.1f MiB, loom's estimate %.1f MiB (peak/estimate %.2f)\n",
        peak_b / 1048576, static_cast<double>(est->total) / 1048576,
        est->total > 0 ? peak_b / static_cast<double>(est->total) : 0.0);
  } else {
    std::printf("  memory: allocator peak %.1f MiB (no estimate: %s)\n", peak_b / 1048576,
                std::string(est.status().message()).c_str());
  }
  double total = 0;
  auto report = OpProfiler::Report();
  for (const auto& [family, t] : report) total += t.seconds;
  std::printf("  breakdown by op family (profiled pass, per step):\n");
  for (const auto& [family, t] : report) {
    std::printf("    %-14s %9.2f ms  %5.1f%%  (%lld calls)\n", family.c_str(),
                t.seconds * 1e3 / std::max(1, steps), total > 0 ? 100.0 * t.seconds / total : 0.0,
                static_cast<long long>(t.calls / std::max(1, steps)));
  }
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_step, "bench step", "time training steps of a job's model",
                      RunBenchStep);

}  // namespace loom
