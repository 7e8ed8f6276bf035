// The end of a multi-rank job after an error on this rank: a peer may already wait in a
// collective for this rank, so the whole job must end rather than hang. When the error is a
// wait past runtime.collective_timeout_s (DeadlineExceeded from a communicator, naming the
// operation, the group and the step), this rank first takes the world's roll call
// (World::TakeRollCall) and logs which ranks were waiting where and which did not arrive
// (stalled in compute, crashed, or hung outside communication). Then World::Abort (MPI_Abort:
// mpirun ends every rank, one stalled in compute included).
//
// Promise: a job whose rank stalls ends within runtime.collective_timeout_s + RollCallGrace + the
// time mpirun takes to kill the ranks (a few seconds), well inside timeout + 10 s.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "parallel/world.h"

namespace loom {

// How long the roll call waits for answers: a quarter of the deadline, between 1 and 5 s (peers
// entered their waits at slightly different times; those inside a wait answer at once).
absl::Duration RollCallGrace(absl::Duration timeout);

// The report for a DeadlineExceeded `status`: its message, then who waited where and who did
// not arrive. Pure, for tests.
std::string WatchdogReport(int rank, const absl::Status& status, const World::RollCall& call);

// Logs "loom train: error: rank R: ..." (with the roll call for a deadline), then ends every
// rank with exit code `code`. In a world of one it only exits.
[[noreturn]] void EndJobAfterError(World* world, const absl::Status& status, int code);

}  // namespace loom
