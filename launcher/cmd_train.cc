// `loom train --config F [--set path=value ...]`: runs a training job (under mpirun for
// several ranks). The config is validated against the world size before anything is built.
#include <iostream>

#include "absl/strings/str_cat.h"

#include "launcher/command.h"
#include "launcher/config.h"
#include "launcher/trainer.h"
#include "parallel/world.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kUsage[] =
    "usage: loom train --config F [--set path.to.field=value ...]\n"
    "  Trains the model the job file describes. Run under mpirun for several ranks:\n"
    "    mpirun -np 2 loom train --config configs/tiny.textproto\n"
    "  --set overrides any field, e.g. --set lr_schedule.total_steps=100";

absl::Status RunTrain(const std::vector<std::string>& argv) {
  if (WantsHelp(argv, kUsage)) return absl::OkStatus();
  std::vector<std::string> args = argv;
  std::string path;
  std::vector<std::string> overrides;
  LOOM_RETURN_IF_ERROR(ExtractConfigFlags(&args, &path, &overrides));
  if (path.empty()) return absl::InvalidArgumentError(std::string("--config is required\n") + kUsage);
  if (!args.empty()) {
    return absl::InvalidArgumentError("unexpected argument '" + args[0] + "'\n" + kUsage);
  }
  LOOM_ASSIGN_OR_RETURN(JobConfig config, LoadJobConfig(path, overrides));
  LOOM_ASSIGN_OR_RETURN(World * world, World::Get());
  auto trainer = Trainer::Create(config, world);
  absl::Status s = trainer.ok() ? (*trainer)->Run() : trainer.status();
  if (!s.ok() && world->size() > 1) {
    // A peer may already be waiting in a collective for this rank: end them all rather than
    // leave the job hanging.
    std::cerr << "loom train: error: rank " << world->rank() << ": " << s.message() << "\n";
    world->Abort(s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1);
  }
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat("rank 0: ", s.message()));
  return s;
}

}  // namespace

LOOM_REGISTER_COMMAND(train, "train", "train a model: loom train --config job.textproto", kUsage,
                      RunTrain);

}  // namespace loom
