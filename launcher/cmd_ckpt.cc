// `loom ckpt inspect DIR` and `loom ckpt verify DIR`: a checkpoint's contents, and a full
// re-read of it. DIR is a step directory or a checkpoint.dir (its `latest` is used).
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "launcher/command.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom {
namespace {

constexpr char kDirHelp[] =
    "a checkpoint step directory (step_XXXXXXXX) or a checkpoint.dir, whose latest checkpoint "
    "is used";

// The one DIR argument of inspect and verify, opened; false when --help was printed.
absl::StatusOr<std::unique_ptr<CheckpointReader>> OpenArg(FlagSet& flags,
                                                          const std::vector<std::string>& args,
                                                          bool* run) {
  std::vector<std::string> dir;
  flags.Positional("DIR", &dir, 1, 1, kDirHelp);
  LOOM_ASSIGN_OR_RETURN(*run, flags.Parse(args));
  if (!*run) return nullptr;
  LOOM_ASSIGN_OR_RETURN(std::string resolved, ResolveCheckpoint(dir[0]));
  return CheckpointReader::Open(resolved);
}

std::string Mb(int64_t bytes) { return absl::StrFormat("%.2f MB", bytes / 1e6); }

absl::Status RunInspect(const std::vector<std::string>& args) {
  FlagSet flags("loom ckpt inspect",
                "Prints the step, tokens, saving layout, data position, files and every tensor\n"
                "with its shape and the bytes saved per kind (weights, master, adam_m, adam_v).");
  bool run = false;
  LOOM_ASSIGN_OR_RETURN(auto reader, OpenArg(flags, args, &run));
  if (!run) return absl::OkStatus();
  const CheckpointManifest& m = reader->manifest();
  const CheckpointLayout& l = m.layout();
  std::cout << "checkpoint " << reader->dir() << "\n"
            << "step " << m.step() << ", " << m.tokens_seen() << " tokens seen\n"
            << "saved by " << l.world_size() << " rank(s): dp " << l.dp() << " tp " << l.tp()
            << " pp " << l.pp() << (l.cp() > 1 ? absl::StrCat(" cp ", l.cp()) : "")
            << " (virtual stages " << l.virtual_stages() << "), "
            << (l.distributed_optimizer() ? "distributed" : "plain") << " optimizer, weights "
            << l.weights_dtype() << "\n"
            << "data: epoch " << m.data().epoch() << ", " << m.data().samples_consumed()
            << " samples of its global order consumed\n";
  int64_t total = 0;
  for (const CheckpointFile& f : m.files()) total += f.size();
  std::cout << m.files_size() << " data file(s), " << Mb(total) << ", " << m.slices_size()
            << " slices\n";
  for (const CheckpointFile& f : m.files()) {
    std::cout << "  " << f.name() << "  " << f.size() << " bytes (rank " << f.rank() << ")\n";
  }
  std::map<std::string, std::map<int, std::pair<int64_t, int>>> per;  // tensor -> kind -> bytes, n
  for (const CheckpointSlice& s : m.slices()) {
    auto& e = per[s.tensor()][s.kind()];
    e.first += s.length();
    ++e.second;
  }
  std::cout << m.tensors_size() << " tensors:\n";
  for (const CheckpointTensor& t : m.tensors()) {
    std::vector<std::string> kinds;
    for (const auto& [kind, e] : per[t.name()]) {
      kinds.push_back(absl::StrCat(KindName(static_cast<CheckpointKind>(kind)), " ", e.first,
                                   " B in ", e.second, " slice(s)"));
    }
    std::cout << "  " << t.name() << " [" << absl::StrJoin(t.global_shape(), ", ") << "]"
              << (t.zero_rows_from() >= 0
                      ? absl::StrCat(" (rows >= ", t.zero_rows_from(), " are padding)")
                      : "")
              << ": " << absl::StrJoin(kinds, ", ") << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunVerify(const std::vector<std::string>& args) {
  FlagSet flags("loom ckpt verify",
                "Re-reads every slice of every file, checks every CRC-32C and file size, and that\n"
                "the slices of each tensor cover it exactly; exits non-zero naming the first\n"
                "problem.");
  bool run = false;
  LOOM_ASSIGN_OR_RETURN(auto reader, OpenArg(flags, args, &run));
  if (!run) return absl::OkStatus();
  Timer timer;
  LOOM_ASSIGN_OR_RETURN(int64_t bytes, reader->VerifyAll());
  // Coverage: each saved tensor and kind read whole (this also checks the slices' boxes).
  const CheckpointManifest& m = reader->manifest();
  for (const CheckpointTensor& t : m.tensors()) {
    TensorBox box;
    for (int64_t d : t.global_shape()) {
      box.offset.push_back(0);
      box.extent.push_back(d);
    }
    std::vector<float> buf(box.numel());
    for (CheckpointKind kind : {WEIGHTS, MASTER, ADAM_M, ADAM_V}) {
      if (!reader->Has(t.name(), kind)) continue;
      LOOM_RETURN_IF_ERROR(reader->ReadBox(t.name(), kind, box, buf.data()));
    }
  }
  std::cout << "OK: " << reader->dir() << ": " << m.slices_size() << " slices, " << Mb(bytes)
            << " in " << m.files_size() << " file(s); every checksum matches and every tensor "
            << "is covered exactly (" << absl::StrFormat("%.2f", timer.Seconds()) << " s)\n";
  return absl::OkStatus();
}

absl::Status RunCkpt(const std::vector<std::string>& args) {
  FlagSet flags("loom ckpt",
                "subcommands (loom ckpt <subcommand> --help for each):\n"
                "inspect DIR  a checkpoint's step, layout, data position, files and tensors\n"
                "verify DIR   re-read every slice and check every checksum and size");
  std::vector<std::string> words;
  flags.Positional("SUBCOMMAND", &words, 0, 1, "");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(words.empty() ? std::string("expected a subcommand")
                                 : absl::StrCat("unknown ckpt subcommand '", words[0], "'"),
                   "\n", flags.Usage()));
}

}  // namespace

LOOM_REGISTER_COMMAND(ckpt, "ckpt", "checkpoint tools (loom ckpt inspect | verify)", RunCkpt);
LOOM_REGISTER_COMMAND(ckpt_inspect, "ckpt inspect",
                      "show a checkpoint's step, layout, files and tensors", RunInspect);
LOOM_REGISTER_COMMAND(ckpt_verify, "ckpt verify",
                      "re-read every slice of a checkpoint and check every checksum", RunVerify);

}  // namespace loom
