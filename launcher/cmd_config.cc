// `loom config check`: loads a job config with its overrides, validates it for a world size and
// prints the resolved config (text format, every default filled) followed by the derived numbers
// as `#` comments, so the output is itself a valid job file. A config with problems prints
// nothing on stdout and returns InvalidArgument listing every problem.
#include <algorithm>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "launcher/command.h"
#include "launcher/config.h"

namespace loom {
namespace {

constexpr char kUsage[] =
    "usage: loom config check --config FILE [--world-size N] [--set path.to.field=value ...]\n"
    "  Loads FILE (a text-format JobConfig, see proto/job.proto), applies each --set in order,\n"
    "  fills the defaults and checks the job for N ranks. Prints the resolved config and the\n"
    "  derived numbers (parameters, padded vocab, accumulation steps, layers per stage), or every\n"
    "  problem found, with exit status 2.\n"
    "  --world-size N   ranks of the job; default parallel.dp * tp * pp (dp 0 counts as 1)\n"
    "  --set a.b=v      override a field: numbers, true/false, strings, enum names, lists [1,2]";

absl::Status RunConfigCheck(const std::vector<std::string>& args_in) {
  if (WantsHelp(args_in, kUsage)) return absl::OkStatus();
  std::vector<std::string> args = args_in;
  std::string path;
  std::vector<std::string> overrides;
  absl::Status flags = ExtractConfigFlags(&args, &path, &overrides);
  if (!flags.ok()) return flags;
  int world_size = 0;
  bool world_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
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
    world_size = std::max(1, p.dp()) * std::max(1, p.tp()) * std::max(1, p.pp());
  }
  absl::StatusOr<DerivedNumbers> derived = DeriveNumbers(*config, world_size);
  if (!derived.ok()) {
    return absl::Status(derived.status().code(),
                        absl::StrCat(path, ": ", derived.status().message()));
  }
  std::cout << "# loom config check: " << path << ", world size " << world_size
            << (world_given ? "" : " (from parallel.dp * tp * pp)") << "\n";
  for (const auto& o : overrides) std::cout << "# --set " << o << "\n";
  std::cout << JobConfigToText(*config);
  std::cout << "# derived numbers:\n" << FormatDerivedNumbers(*derived, "#   ");
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(config_check, "config check",
                      "validate a job config and print it resolved, with its derived numbers",
                      kUsage, RunConfigCheck);

}  // namespace loom
