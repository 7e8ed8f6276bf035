#include "train/watchdog.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallel/communicator.h"

namespace loom {

absl::Duration RollCallGrace(absl::Duration timeout) {
  return std::clamp(timeout / 4, absl::Seconds(1), absl::Seconds(5));
}

std::string WatchdogReport(int rank, const absl::Status& status, const World::RollCall& call) {
  std::string out = absl::StrCat("rank ", rank, ": ", status.message());
  if (status.code() != absl::StatusCode::kDeadlineExceeded) return out;
  absl::StrAppend(&out, "\nwatchdog roll call from rank ", rank, ":");
  std::vector<std::pair<int, std::string>> waiting = call.waiting;
  std::sort(waiting.begin(), waiting.end());
  for (const auto& [r, where] : waiting) absl::StrAppend(&out, "\n  rank ", r, ": ", where);
  if (call.silent.empty()) {
    absl::StrAppend(&out,
                    "\n  every rank is inside a communicator wait: the ranks issued "
                    "different operations (a mismatch), or the network is down");
  } else {
    absl::StrAppend(&out,
                    "\n  did not arrive (no answer: stalled in compute, crashed or hung "
                    "outside communication): rank",
                    call.silent.size() == 1 ? " " : "s ", FormatRankList(call.silent));
  }
  return out;
}

void EndJobAfterError(World* world, const absl::Status& status, int code) {
  World::RollCall call;
  if (world->size() > 1 && status.code() == absl::StatusCode::kDeadlineExceeded) {
    // Peers are told the operation this rank waited on, without the deadline's explanation.
    std::string what(status.message());
    what = what.substr(0, what.find(" did not complete within"));
    call = world->TakeRollCall(what, RollCallGrace(world->state()->timeout));
  }
  // One write, so the reports of ranks ending at the same moment do not interleave.
  const std::string report =
      absl::StrCat("loom train: error: ", WatchdogReport(world->rank(), status, call), "\n");
  std::cerr << report << std::flush;
  world->Abort(code);
}

}  // namespace loom
