// `loom config check`: loads a job config with its overrides, checks it for a world size on this
// machine with the same verdict `loom train` reaches (job/job_check.h: the config, what
// this build cannot do yet, the data globs, the run dir, the memory) and prints the resolved
// config (text format, every default filled) followed by the derived numbers and the memory
// per rank as `#` comments, so the output is itself a valid job file. A job with problems
// prints nothing on stdout and returns InvalidArgument listing every problem (exit code 2).
// `loom config` alone (or with --help) lists the config subcommands.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "launcher/command.h"
#include "parallel/rank_grid.h"
#include "job/config.h"
#include "job/job_check.h"

namespace loom {
namespace {

constexpr char kUsage[] =
    "usage: loom config check --config FILE [--world-size N] [--set path.to.field=value ...]\n"
    "  Loads FILE (a text-format JobConfig, see proto/job.proto), applies each --set in order,\n"
    "  fills the defaults and checks the job for N ranks on this machine, as `loom train` does:\n"
    "  the config, features this build lacks, data that does not open, checkpoint.dir and\n"
    "  run_dir (writable, not locked by a running job, no other run's metrics), the resume\n"
    "  checkpoint, model.init_from, and the memory a rank needs against the memory available\n"
    "  (host RAM\n"
    "  with its cgroup limit, or the GPU's; LOOM_MEMORY_LIMIT_BYTES=N caps it). Prints the\n"
    "  resolved config, the derived numbers (parameters, padded vocab, accumulation steps,\n"
    "  layers per stage) and the memory per rank, or every problem found, with exit status 2.\n"
    "  --world-size N   ranks of the job; default parallel.dp * tp * pp (dp 0 counts as 1)\n"
    "  --ranks-per-host N  ranks sharing this host's memory (CPU backend); default: all of\n"
    "                   them, as `mpirun -np N` on this host starts them\n"
    "  --set a.b=v      override a field: numbers, true/false, strings, enum names, lists [1,2]";

absl::Status RunConfigCheck(const std::vector<std::string>& args_in) {
  if (WantsHelp(args_in, kUsage)) return absl::OkStatus();
  std::vector<std::string> args = args_in;
  std::string path;
  std::vector<std::string> overrides;
  absl::Status flags = ExtractConfigFlags(&args, &path, &overrides);
  if (!flags.ok()) return flags;
  int world_size = 0, ranks_per_host = 0;
  bool world_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
    if (args[i] == "--ranks-per-host" || absl::StartsWith(args[i], "--ranks-per-host=")) {
      if (args[i] == "--ranks-per-host" && i + 1 < args.size()) {
        value = args[++i];
      } else if (args[i] != "--ranks-per-host") {
        value = args[i].substr(std::string("--ranks-per-host=").size());
      }
      if (!absl::SimpleAtoi(value, &ranks_per_host) || ranks_per_host < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--ranks-per-host expects a positive integer, got '", value, "'"));
      }
      continue;
    }
    if (args[i] == "--world-size" && i + 1 < args.size()) {
      value = args[++i];
    } else if (absl::StartsWith(args[i], "--world-size=")) {
      value = args[i].substr(std::string("--world-size=").size());
    } else if (args[i] == "--world-size") {
      return absl::InvalidArgumentError("--world-size needs a number of ranks");
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", args[i], "'\n", kUsage));
    }
    if (!absl::SimpleAtoi(value, &world_size) || world_size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--world-size expects a positive integer, got '", value, "'"));
    }
    world_given = true;
  }
  if (path.empty())
    return absl::InvalidArgumentError(absl::StrCat("--config is required\n", kUsage));

  absl::StatusOr<JobConfig> config = LoadJobConfig(path, overrides);
  if (!config.ok()) return config.status();
  const ParallelConfig& p = config->parallel();
  if (!world_given) {
    // In 64 bits: absurd degrees are reported by the check, not overflowed here.
    const int64_t product =
        int64_t{std::max(1, p.dp())} * std::max(1, p.tp()) * std::max(1, p.pp());
    world_size = static_cast<int>(std::min<int64_t>(product, std::numeric_limits<int>::max()));
  }
  // As `mpirun -np N` on this host would start it, unless told how the ranks spread.
  if (ranks_per_host == 0) ranks_per_host = world_size;
  const JobCheck check = CheckJob(*config, world_size, ranks_per_host);
  absl::Status verdict = JobCheckStatus(check, world_size);
  if (!verdict.ok()) {
    return absl::Status(verdict.code(), absl::StrCat(path, ": ", verdict.message()));
  }
  std::cout << "# loom config check: " << path << ", world size " << world_size
            << (world_given ? "" : " (from parallel.dp * tp * pp)") << "\n";
  for (const auto& o : overrides) std::cout << "# --set " << o << "\n";
  std::cout << JobConfigToText(*config);
  std::cout << "# derived numbers:\n" << FormatJobLayout(*check.numbers, "#   ");
  std::cout << FormatJobMemory(check, "#   ");
  {
    // Which rank is where: coordinates and group members, the pattern for large worlds.
    const JobLayout& n = *check.numbers;
    auto grid = RankGrid::Create(world_size, n.tp, n.dp, n.pp);
    if (grid.ok()) {
      std::cout << "# rank grid:\n";
      for (absl::string_view line : absl::StrSplit(grid->Describe(16), '\n')) {
        if (!line.empty()) std::cout << "#   " << line << "\n";
      }
    }
  }
  return absl::OkStatus();
}

constexpr char kConfigUsage[] =
    "usage: loom config <subcommand> ...\n"
    "  check   validate a job config for a world size on this machine and print it resolved,\n"
    "          with its derived numbers and memory per rank (loom config check --help)";

absl::Status RunConfig(const std::vector<std::string>& args) {
  if (WantsHelp(args, kConfigUsage)) return absl::OkStatus();
  if (args.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("a subcommand is needed\n", kConfigUsage));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown config subcommand '", args[0], "'\n", kConfigUsage));
}

}  // namespace

LOOM_REGISTER_COMMAND(config, "config", "job config tools (loom config check)", kConfigUsage,
                      RunConfig);

LOOM_REGISTER_COMMAND(config_check, "config check",
                      "validate a job config and print it resolved, with its derived numbers",
                      kUsage, RunConfigCheck);

}  // namespace loom
