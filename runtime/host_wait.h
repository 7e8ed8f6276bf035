// Host waits on device work, with the job's deadline. Every place where the host blocks until
// a GPU (or any asynchronous device) has finished queued work (a device-to-host copy of the
// loss, the gradient norm, a checkpoint snapshot, a synchronisation) goes through
// WaitForDevice, which polls instead of blocking in the driver: a kernel or a copy queued
// behind a collective whose peer has stalled would otherwise hold the host in cudaMemcpy
// forever, where no communicator deadline can see it.
//
// The policy (deadline, the training step the message names, the roll-call hook) is set once
// per process by whoever owns those (parallel/world.cc installs the CommState's), so runtime/
// stays below parallel/. Extra checks (the NCCL backend's registry of collectives in flight)
// run at every poll, so a wait stuck behind a collective names the collective, its group and
// its step, exactly as a communicator wait would.
//
// Promise: WaitForDevice returns within the deadline (+ one poll) with DeadlineExceeded worded
// "<what> did not complete within <t> at step <s>: ..." (the wording the watchdog's roll call
// parses), or with the first error an extra check reports, or OK once `done` says so.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace loom {

struct HostWaitPolicy {
  // The deadline of one wait (the job's runtime.collective_timeout_s); infinite when unset.
  std::function<absl::Duration()> timeout;
  // The training step error messages name (-1: outside a step); may be empty.
  std::function<int64_t()> step;
  // Called now and then during a wait that lasts (>= 100 ms), with what is waited for: the
  // world answers a peer's watchdog roll call from here. May be empty.
  std::function<void(const std::string& what)> on_long_wait;
};

// Replaces the process's policy. Set at start-up, before device work is waited on.
void SetHostWaitPolicy(HostWaitPolicy policy);

// Adds a check run at every poll of every wait (e.g. "is a collective past its deadline").
// A non-OK result ends the wait with that error. Checks live for the process.
void AddHostWaitCheck(std::function<absl::Status()> check);

// The current deadline of one wait under the policy.
absl::Duration HostWaitTimeout();

// Polls `done` (true: the work has finished; an error: it failed) until it is true, spinning
// briefly, then yielding, then napping 50 us, up to the policy's deadline. `what` names the
// work ("copy of 4 bytes from cuda:0 to the host").
absl::Status WaitForDevice(const std::function<absl::StatusOr<bool>()>& done,
                           const std::string& what);

// The DeadlineExceeded status WaitForDevice returns (for tests and for other waiters).
absl::Status HostWaitDeadlineError(const std::string& what, absl::Duration timeout, int64_t step);

}  // namespace loom
