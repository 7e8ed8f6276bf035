#include "job/job_check.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "data/token_shard.h"
#include "job/checkpoint_job.h"
#include "metrics/run_dir.h"
#include "ops/cuda/limits.h"
#include "runtime/device.h"
#include "runtime/status.h"

namespace loom {
namespace {

std::string Mib(int64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

int RanksPerHost() {
  const char* env = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  int n = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &n) && n >= 1) return n;
  return 1;
}

bool JobRunsOnGpu(const JobConfig& c) {
  switch (c.runtime().backend()) {
    case RuntimeConfig::CPU:
    case RuntimeConfig::TEST:  // host memory underneath
      return false;
    case RuntimeConfig::CUDA:
      return true;
    default:
      return CudaDeviceCount() > 0;
  }
}

// The free memory of the device this rank will use, probing no other.
absl::StatusOr<AvailableMemory> GpuAvailable(const LocalPlacement& where, int* device) {
  LOOM_ASSIGN_OR_RETURN(*device,
                        ChooseCudaDevice(where, CudaDeviceCount(), CudaUnavailableReason()));
  return CudaAvailableMemory(*device);
}

}  // namespace

std::vector<std::string> CudaKernelShapeProblems(const JobConfig& config) {
  std::vector<std::string> out;
  const ModelConfig& m = config.model();
  if (m.heads() <= 0 || m.hidden() <= 0) return out;  // ConfigProblems names these
  const int64_t head_dim = m.hidden() / m.heads();
  if (head_dim > ops::cuda::kMaxAttentionHeadDim) {
    out.push_back(absl::StrCat(
        "model.hidden / model.heads = ", m.hidden(), " / ", m.heads(), " = head dim ", head_dim,
        ", but the CUDA attention kernels "
        "support head dims up to ",
        ops::cuda::kMaxAttentionHeadDim, ": use more heads (or runtime.backend CPU)"));
  }
  const int tp = std::max(1, config.parallel().tp());
  const int64_t local_heads = m.heads() / tp;
  const int64_t micro = config.parallel().micro_batch_size();
  if (micro * local_heads > ops::cuda::kMaxGridY) {
    out.push_back(absl::StrCat(
        "parallel.micro_batch_size x model.heads / parallel.tp = ", micro, " x ", local_heads,
        " = ", micro * local_heads, " attention blocks per column, over CUDA's grid limit of ",
        ops::cuda::kMaxGridY, ": lower parallel.micro_batch_size (or raise parallel.tp)"));
  }
  return out;
}

int NcclCommunicatorCount(int tp, int dp, int pp) {
  return (tp > 1) + (dp > 1) + (pp > 1) + (pp > 1 ? 1 : 0);
}

int64_t GpuMemoryReserve(int tp, int dp, int pp) {
  return kGpuOpsReserve + NcclCommunicatorCount(tp, dp, pp) * kNcclCommReserve;
}

JobCheck CheckJob(const JobConfig& config_in, int world_size, const LocalPlacement& where) {
  JobCheck check;
  JobConfig config = config_in;
  ApplyDefaults(&config);
  // The config itself, validated once; its layout when it has no problem.
  check.problems = ConfigProblems(config, world_size);
  if (check.problems.empty()) check.numbers = JobLayout::FromValid(config, world_size);
  for (std::string& p : NotYetSupported(config)) check.problems.push_back(std::move(p));

  // The data globs: each must match a file (the shards' contents are checked when training
  // opens them).
  const std::pair<const char*, const std::string*> globs[] = {
      {"data.train", &config.data().train()}, {"data.val", &config.data().val()}};
  for (const auto& [field, pattern] : globs) {
    if (pattern->empty()) continue;
    auto files = ExpandShardGlobs({*pattern});
    if (!files.ok()) check.problems.push_back(absl::StrCat(field, ": ", files.status().message()));
  }

  // A resume path that does not exist or holds no complete checkpoint, before anything runs.
  auto resume = ResumeSource(config);
  if (!resume.ok()) check.problems.push_back(std::string(resume.status().message()));
  // model.init_from may be a checkpoint (a step directory or a checkpoint.dir).
  std::error_code ec;
  if (std::filesystem::is_directory(config.model().init_from(), ec)) {
    auto dir = ResolveCheckpoint(config.model().init_from());
    if (!dir.ok()) {
      check.problems.push_back(absl::StrCat("model.init_from: ", dir.status().message()));
    }
  }
  // A resumed run continues its metrics; only a fresh one must not reuse a run_dir.
  const bool resumes = resume.ok() && resume->has_value();
  if (!config.logging().run_dir().empty() && !config.logging().overwrite() && !resumes) {
    std::string in_use = RunDirInUseProblem(config.logging().run_dir());
    if (!in_use.empty()) check.problems.push_back(std::move(in_use));
  }

  if (config.runtime().backend() == RuntimeConfig::CUDA && CudaDeviceCount() == 0) {
    check.problems.push_back(absl::StrCat("runtime.backend CUDA, but ", CudaUnavailableReason()));
  }

  // Memory, for a config whose numbers can be derived.
  if (check.numbers.has_value()) {
    auto estimate = EstimateMemoryPerRank(*check.numbers);
    if (!estimate.ok()) {
      check.problems.push_back(absl::StrCat("memory estimate: ", estimate.status().message()));
    } else {
      check.memory = *estimate;
      check.on_gpu = JobRunsOnGpu(config);
      const JobLayout& n = *check.numbers;
      check.reserve = check.on_gpu ? GpuMemoryReserve(n.tp, n.dp, n.pp) : kCpuMemoryReserve;
      check.ranks_per_host = check.on_gpu ? 1 : RanksPerHost();
      if (check.on_gpu) {
        for (std::string& p : CudaKernelShapeProblems(config)) check.problems.push_back(p);
      }
      auto available = check.on_gpu && CudaDeviceCount() > 0
                           ? GpuAvailable(where, &check.cuda_device)
                           : HostAvailableMemory();
      if (!available.ok()) {
        check.problems.push_back(absl::StrCat("memory: ", available.status().message()));
      } else {
        check.available = *available;
        const double need = static_cast<double>(check.memory->total) * check.ranks_per_host +
                            static_cast<double>(check.reserve);
        if (need > static_cast<double>(available->bytes)) {
          check.problems.push_back(absl::StrCat(
              "memory: the job needs ", Mib(check.memory->total), " per rank (weights ",
              Mib(check.memory->weights), ", gradients ", Mib(check.memory->gradients),
              check.memory->master_weights > 0
                  ? absl::StrCat(", fp32 master weights ", Mib(check.memory->master_weights))
                  : "",
              ", AdamW moments ", Mib(check.memory->optimizer_moments), ", activations ",
              Mib(check.memory->activations), ")",
              check.ranks_per_host > 1
                  ? absl::StrCat(" x ", check.ranks_per_host, " ranks on this host")
                  : "",
              " + ", Mib(check.reserve), " reserve, but ", check.on_gpu ? "the GPU" : "this host",
              " has ", Mib(available->bytes), " available (", available->source,
              "); shrink the model or parallel.micro_batch_size, or spread it over more ranks"));
        }
      }
    }
  }
  return check;
}

absl::Status JobCheckStatus(const JobCheck& check, int world_size) {
  if (check.problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      check.problems.size(), check.problems.size() == 1 ? " problem" : " problems",
      " in the job (world size ", world_size, "):\n  - ", absl::StrJoin(check.problems, "\n  - ")));
}

std::string FormatJobMemory(const JobCheck& check, const std::string& prefix) {
  if (!check.memory.has_value()) return "";
  std::string out = FormatMemoryEstimate(*check.memory, prefix);
  if (check.available.has_value()) {
    absl::StrAppend(&out, prefix, "available: ", Mib(check.available->bytes), " (",
                    check.available->source, "); reserve ", Mib(check.reserve),
                    check.ranks_per_host > 1
                        ? absl::StrCat("; ", check.ranks_per_host, " ranks on this host")
                        : "",
                    "\n");
  }
  return out;
}

}  // namespace loom
