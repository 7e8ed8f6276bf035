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

constexpr char kDescription[] =
    "Loads FILE (a text-format JobConfig, see proto/job.proto), applies each --set in order,\n"
    "fills the defaults and checks the job for N ranks on this machine, as `loom train` does:\n"
    "the config, features this build lacks, data that does not open, checkpoint.dir and\n"
    "run_dir (writable, not locked by a running job, no other run's metrics), the resume\n"
    "checkpoint, model.init_from, and the memory a rank needs against the memory available\n"
    "(host RAM with its cgroup limit, or the GPU's; LOOM_MEMORY_LIMIT_BYTES=N caps it). Prints\n"
    "the resolved config, the derived numbers (parameters, padded vocab, accumulation steps,\n"
    "layers per stage) and the memory per rank, or every problem found, with exit status 2.";

absl::Status RunConfigCheck(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> overrides;
  int world_size = 0, ranks_per_host = 0;
  FlagSet flags("loom config check", kDescription);
  flags.JobFlags(&path, &overrides);
  flags.Int("--world-size", &world_size, "N", "ranks of the job")
      .AtLeast(1)
      .DefaultText("parallel.dp * tp * pp * cp, dp 0 counting as 1");
  flags.Int("--ranks-per-host", &ranks_per_host, "N", "ranks sharing this host's memory (CPU)")
      .AtLeast(1)
      .DefaultText("all of them, as `mpirun -np N` on this host starts them");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  const bool world_given = flags.Given("--world-size");

  absl::StatusOr<JobConfig> config = LoadJobConfig(path, overrides);
  if (!config.ok()) return config.status();
  const ParallelConfig& p = config->parallel();
  if (!world_given) {
    // In 64 bits: absurd degrees are reported by the check, not overflowed here.
    const int64_t product =
        int64_t{std::max(1, p.dp())} * std::max(1, p.tp()) * std::max(1, p.pp()) *
        std::max(1, p.cp());
    world_size = static_cast<int>(std::min<int64_t>(product, std::numeric_limits<int>::max()));
  }
  // As `mpirun -np N` on this host would start it, unless told how the ranks spread.
  if (ranks_per_host == 0) ranks_per_host = world_size;
  const JobCheck check = CheckJob(*config, world_size, LocalPlacementFromEnv(), ranks_per_host);
  absl::Status verdict = JobCheckStatus(check, world_size);
  if (!verdict.ok()) {
    return absl::Status(verdict.code(), absl::StrCat(path, ": ", verdict.message()));
  }
  std::cout << "# loom config check: " << path << ", world size " << world_size
            << (world_given ? "" : " (from parallel.dp * tp * pp * cp)") << "\n";
  for (const auto& o : overrides) std::cout << "# --set " << o << "\n";
  std::cout << JobConfigToText(*config);
  std::cout << "# derived numbers:\n" << FormatJobLayout(*check.numbers, "#   ");
  std::cout << FormatJobMemory(check, "#   ");
  {
    // Which rank is where: coordinates and group members, the pattern for large worlds.
    const JobLayout& n = *check.numbers;
    auto grid = RankGrid::Create(world_size, n.tp, n.dp, n.pp, n.cp);
    if (grid.ok()) {
      std::cout << "# rank grid:\n";
      for (absl::string_view line : absl::StrSplit(grid->Describe(16), '\n')) {
        if (!line.empty()) std::cout << "#   " << line << "\n";
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RunConfig(const std::vector<std::string>& args) {
  FlagSet flags("loom config",
                "subcommands:\n"
                "check   validate a job config for a world size on this machine and print it\n"
                "        resolved, with its derived numbers and memory per rank (loom config\n"
                "        check --help)");
  std::vector<std::string> words;
  flags.Positional("SUBCOMMAND", &words, 0, 1, "");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  if (words.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("a subcommand is needed\n", flags.Usage()));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown config subcommand '", words[0], "'\n", flags.Usage()));
}

}  // namespace

LOOM_REGISTER_COMMAND(config, "config", "job config tools (loom config check)", RunConfig);

LOOM_REGISTER_COMMAND(config_check, "config check",
                      "validate a job config and print it resolved, with its derived numbers",
                      RunConfigCheck);

}  // namespace loom
