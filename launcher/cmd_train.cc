// `loom train --config F [--set path=value ...] [--overwrite]`: runs a training job (under
// mpirun for several ranks). The job is checked as `loom config check` checks it
// (job/job_check.h) before anything is built; a bad job exits with code 2, and under mpirun
// only rank 0 prints the list of problems (every other rank one line), unless rank 0 found none
// and another rank did (memory or files that differ between hosts), which then prints its own.
// SIGTERM / SIGINT stop the run at the next step boundary with exit code 0.

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "launcher/command.h"
#include "job/config.h"
#include "job/job_check.h"
#include "train/stop_signal.h"
#include "train/trainer.h"
#include "train/watchdog.h"
#include "parallel/world.h"
#include "runtime/dir_lock.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Trains the model the job file describes. Run under mpirun for several ranks:\n"
    "  mpirun -np 2 loom train --config configs/tiny.textproto\n"
    "SIGTERM or SIGINT (Ctrl-C) stops at the next step boundary with exit code 0; a second\n"
    "one ends the process at once.";

// The job as loaded and checked on this rank, and every rank's agreement on whether it runs.
absl::StatusOr<JobConfig> LoadAndCheck(const std::string& path,
                                       const std::vector<std::string>& overrides, World* world) {
  absl::StatusOr<JobConfig> config = LoadJobConfig(path, overrides);
  absl::Status verdict = config.status();
  if (config.ok()) verdict = JobCheckStatus(CheckJob(*config, world->size()), world->size());
  // [rank 0 refused, ranks that refused]: each rank learns whether rank 0 has said why.
  double refused[2] = {world->rank() == 0 && !verdict.ok() ? 1.0 : 0.0, verdict.ok() ? 0.0 : 1.0};
  LOOM_RETURN_IF_ERROR(world->comm().AllReduceHost(absl::MakeSpan(refused, 2), ReduceOp::kSum));
  if (refused[1] == 0) return config;
  if (world->size() == 1) return verdict;
  if (!verdict.ok() && (world->rank() == 0 || refused[0] == 0)) {
    return absl::Status(verdict.code(),
                        absl::StrCat("rank ", world->rank(), ": ", verdict.message()));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "rank ", world->rank(), ": the job is refused (", static_cast<int>(refused[1]),
      " rank(s) found problems; ", refused[0] > 0 ? "rank 0 lists them" : "they list them", ")"));
}

absl::Status RunTrain(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> overrides;
  bool overwrite = false;
  FlagSet flags("loom train", kDescription);
  flags.JobFlags(&path, &overrides);
  flags.Bool("--overwrite", &overwrite,
             "replace the metrics an earlier run left in logging.run_dir (the same as --set "
             "logging.overwrite=true)");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  if (overwrite) overrides.push_back("logging.overwrite=true");
  InstallStopSignalHandlers();
  LOOM_ASSIGN_OR_RETURN(World * world, World::Get());
  LOOM_ASSIGN_OR_RETURN(JobConfig config, LoadAndCheck(path, overrides, world));
  // One job per checkpoint.dir and run_dir, held until the process ends (rank 0 holds them for
  // the job; every rank learns whether it could).
  std::vector<std::unique_ptr<DirLock>> locks;
  absl::Status locked;
  if (world->rank() == 0) {
    for (const std::pair<const char*, std::string>& dir :
         {std::pair<const char*, std::string>{"checkpoint.dir", config.checkpoint().dir()},
          {"logging.run_dir", config.logging().run_dir()}}) {
      if (dir.second.empty() || !locked.ok()) continue;
      if (!locks.empty() && dir.second == config.checkpoint().dir()) continue;  // the same one
      auto lock = DirLock::Acquire(dir.second, dir.first);
      if (lock.ok()) {
        locks.push_back(std::move(*lock));
      } else {
        locked = lock.status();
      }
    }
  }
  {
    double failed[1] = {locked.ok() ? 0.0 : 1.0};
    LOOM_RETURN_IF_ERROR(world->comm().AllReduceHost(absl::MakeSpan(failed, 1), ReduceOp::kSum));
    if (!locked.ok()) return locked;
    if (failed[0] > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", world->rank(),
                       ": the job is refused (rank 0 could not lock its "
                       "directories; it says why)"));
    }
  }
  auto trainer = Trainer::Create(config, world);
  absl::Status s = trainer.ok() ? (*trainer)->Run() : trainer.status();
  if (!s.ok() && world->size() > 1) {
    // A peer may already be waiting in a collective for this rank: end them all rather than
    // leave the job hanging (after a roll call naming the ranks that did not arrive when this
    // rank's wait timed out).
    EndJobAfterError(world, s, s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1);
  }
  return s;
}

}  // namespace

LOOM_REGISTER_COMMAND(train, "train", "train a model: loom train --config job.textproto", RunTrain);

}  // namespace loom
