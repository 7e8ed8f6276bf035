#include "job/job_check.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "data/data_loader.h"
#include "data/token_shard.h"
#include "job/checkpoint_job.h"
#include "metrics/run_dir.h"
#include "model/hf_format.h"
#include "model/model_file.h"
#include "ops/cuda/limits.h"
#include "runtime/device.h"
#include "runtime/dir_lock.h"
#include "runtime/fs.h"
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

int NcclCommunicatorCount(int tp, int dp, int pp, int cp) {
  return (tp > 1) + (dp > 1) + (pp > 1) + (pp > 1 ? 1 : 0) + (cp > 1 ? 2 : 0);
}

int64_t GpuMemoryReserve(int tp, int dp, int pp, int cp) {
  return kGpuOpsReserve + NcclCommunicatorCount(tp, dp, pp, cp) * kNcclCommReserve;
}

JobCheck CheckJob(const JobConfig& config_in, int world_size, const LocalPlacement& where,
                  int ranks_per_host, bool probe_locks) {
  JobCheck check;
  JobConfig config = config_in;
  ApplyDefaults(&config);
  // The config itself, validated once; its layout when it has no problem.
  check.problems = ConfigProblems(config, world_size);
  if (check.problems.empty()) check.numbers = JobLayout::FromValid(config, world_size);
  for (std::string& p : NotYetSupported(config)) check.problems.push_back(std::move(p));

  // The data: each glob must match files, and (for a config whose numbers derive) the shards
  // must open as training opens them: headers, sizes, token ids below the vocabulary.
  const std::optional<JobLayout>& derived = check.numbers;
  const std::pair<const char*, const std::string*> globs[] = {
      {"data.train", &config.data().train()}, {"data.val", &config.data().val()}};
  for (const auto& [field, pattern] : globs) {
    if (pattern->empty()) continue;
    auto files = ExpandShardGlobs({*pattern});
    if (!files.ok()) {
      check.problems.push_back(absl::StrCat(field, ": ", files.status().message()));
      continue;
    }
    if (!derived.has_value()) continue;
    DataLoaderOptions opts;
    opts.patterns = {*pattern};
    opts.format =
        config.data().format() == DataConfig::RAW_U16 ? ShardFormat::kRawU16 : ShardFormat::kLlmc;
    opts.vocab_size = config.model().vocab();
    opts.seq_len = config.data().seq_len();
    opts.dp_size = derived->dp;
    auto data = DataLoader::Open(opts);
    if (!data.ok()) check.problems.push_back(absl::StrCat(field, ": ", data.status().message()));
  }

  // The directories the job writes: usable now, not at the first save (interval 0 saves only
  // at the end), and not in use by another job.
  const std::pair<const char*, const std::string*> dirs[] = {
      {"checkpoint.dir", &config.checkpoint().dir()},
      {"logging.run_dir", &config.logging().run_dir()}};
  for (const auto& [field, dir] : dirs) {
    if (dir->empty()) continue;
    std::string unusable = UnwritableDirProblem(*dir);
    if (!unusable.empty()) {
      check.problems.push_back(absl::StrCat(field, ": ", unusable));
      continue;
    }
    std::string locked = probe_locks ? DirLockProblem(*dir, field) : std::string();
    if (!locked.empty()) check.problems.push_back(std::move(locked));
  }

  // A resume path that does not exist or holds no complete checkpoint, before anything runs;
  // the checkpoint must open (manifest, file names, sizes) and lie within this run's steps.
  auto resume = ResumeSource(config);
  std::string resume_run_id;
  if (!resume.ok()) {
    check.problems.push_back(std::string(resume.status().message()));
  } else if (resume->has_value()) {
    auto reader = CheckpointReader::Open(**resume);
    if (!reader.ok()) {
      check.problems.push_back(absl::StrCat("checkpoint.resume: ", reader.status().message()));
    } else {
      resume_run_id = (*reader)->manifest().run_id();
      const int64_t step = (*reader)->manifest().step();
      if (derived.has_value() && step > derived->steps_this_run) {
        check.problems.push_back(absl::StrCat(
            "checkpoint ", **resume, " is at step ", step, ", past this run's last step ",
            derived->steps_this_run, " (runtime.stop_at_step / lr_schedule.total_steps)"));
      }
    }
  }
  // A fresh start over a checkpoint.dir holding checkpoints would overwrite them step by step:
  // only when asked for in so many words.
  if (config.checkpoint().resume() == "NONE" && !config.checkpoint().dir().empty() &&
      !config.logging().overwrite()) {
    auto newest = FindNewestCompleteCheckpoint(config.checkpoint().dir());
    if (newest.ok() && !newest->path.empty()) {
      check.problems.push_back(absl::StrCat(
          "checkpoint.resume NONE, but checkpoint.dir ", config.checkpoint().dir(),
          " holds checkpoints (the newest ", newest->path,
          "): a fresh start would overwrite them; resume (checkpoint.resume AUTO), choose another "
          "checkpoint.dir, or start over with --overwrite (logging.overwrite=true)"));
    }
  }
  // model.init_from: a model file, a Hugging Face model directory, or a checkpoint (a step
  // directory or a checkpoint.dir). A model's headers are read and its shape checked.
  const std::string& init_from = config.model().init_from();
  std::error_code ec;
  if (!init_from.empty()) {
    const bool model_file =
        IsHfModelDir(init_from) ||
        (!std::filesystem::is_directory(init_from, ec) && ::access(init_from.c_str(), R_OK) == 0);
    if (model_file) {
      auto reader = ModelFileReader::Open(init_from);
      if (!reader.ok()) {
        check.problems.push_back(absl::StrCat("model.init_from: ", reader.status().message()));
      } else if (derived.has_value()) {
        // "model.init_from <path> does not fit the job's model: <field>: job has .., file has .."
        absl::Status s = CheckSameShape(derived->model, (*reader)->config(), init_from);
        if (!s.ok()) check.problems.push_back(std::string(s.message()));
      }
    } else if (std::filesystem::is_directory(init_from, ec)) {
      auto dir = ResolveCheckpoint(init_from);
      if (!dir.ok()) {
        check.problems.push_back(absl::StrCat("model.init_from: ", dir.status().message()));
      } else if (auto reader = CheckpointReader::Open(*dir); !reader.ok()) {
        check.problems.push_back(absl::StrCat("model.init_from: ", reader.status().message()));
      }
    } else if (::access(init_from.c_str(), R_OK) != 0) {
      check.problems.push_back(absl::StrCat("model.init_from: '", init_from,
                                            "' cannot be read: ", std::strerror(errno)));
    }
  }
  // A resumed run continues its own metrics; a fresh one must not reuse a run_dir, and a
  // resume of another run (another run id) must not cut that run's metrics.
  const bool resumes = resume.ok() && resume->has_value();
  if (!config.logging().run_dir().empty() && !config.logging().overwrite()) {
    std::string in_use = resumes
                             ? RunDirOfAnotherRunProblem(config.logging().run_dir(), resume_run_id)
                             : RunDirInUseProblem(config.logging().run_dir());
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
      check.reserve = check.on_gpu ? GpuMemoryReserve(n.tp, n.dp, n.pp, n.cp) : kCpuMemoryReserve;
      check.ranks_per_host = check.on_gpu         ? 1
                             : ranks_per_host > 0 ? ranks_per_host
                                                  : RanksPerHost();
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
