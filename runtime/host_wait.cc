#include "runtime/host_wait.h"

#include <sched.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace loom {
namespace {

struct Registry {
  std::mutex mu;
  HostWaitPolicy policy;
  std::vector<std::function<absl::Status()>> checks;
  std::vector<std::function<std::string()>> describers;
};

Registry& Get() {
  static auto* r = new Registry();  // never destroyed: waits may run during exit
  return *r;
}

}  // namespace

void SetHostWaitPolicy(HostWaitPolicy policy) {
  std::lock_guard<std::mutex> lock(Get().mu);
  Get().policy = std::move(policy);
}

void AddHostWaitCheck(std::function<absl::Status()> check) {
  std::lock_guard<std::mutex> lock(Get().mu);
  Get().checks.push_back(std::move(check));
}

void AddHostWaitDescriber(std::function<std::string()> describe) {
  std::lock_guard<std::mutex> lock(Get().mu);
  Get().describers.push_back(std::move(describe));
}

absl::Duration HostWaitTimeout() {
  std::function<absl::Duration()> timeout;
  {
    std::lock_guard<std::mutex> lock(Get().mu);
    timeout = Get().policy.timeout;
  }
  return timeout ? timeout() : absl::InfiniteDuration();
}

absl::Status HostWaitDeadlineError(const std::string& what, absl::Duration timeout, int64_t step) {
  return absl::DeadlineExceededError(absl::StrCat(
      what, " did not complete within ", absl::FormatDuration(timeout),
      step >= 0 ? absl::StrCat(" at step ", step) : std::string(" (outside a step)"),
      ": the device did not finish the work queued before it (a kernel, or a collective a "
      "peer never joined); runtime.collective_timeout_s sets this deadline"));
}

absl::Status WaitForDevice(const std::function<absl::StatusOr<bool>()>& done,
                           const std::string& what) {
  HostWaitPolicy policy;
  std::vector<std::function<absl::Status()>> checks;
  std::vector<std::function<std::string()>> describers;
  {
    std::lock_guard<std::mutex> lock(Get().mu);
    policy = Get().policy;
    checks = Get().checks;
    describers = Get().describers;
  }
  const absl::Duration timeout = policy.timeout ? policy.timeout() : absl::InfiniteDuration();
  const absl::Time start = absl::Now();
  absl::Time last_report = start;
  for (int64_t polls = 0;; ++polls) {
    absl::StatusOr<bool> finished = done();
    if (!finished.ok()) return finished.status();
    if (*finished) return absl::OkStatus();
    // The extra checks cost a few driver queries: every 64th poll while spinning is enough.
    if (polls % 64 == 0) {
      for (const auto& check : checks) {
        absl::Status s = check();
        if (!s.ok()) return s;
      }
    }
    const absl::Time now = absl::Now();
    if (now - start > timeout) {
      // The checks run only every 64th poll, and a collective issued before this wait began
      // has the earlier deadline: ask them once more, so the wait reports the collective it is
      // stuck behind (operation, group, step) rather than itself. Under load 64 polls could
      // outlast the gap between the two deadlines (gpu_path_stall failed so now and then).
      for (const auto& check : checks) {
        absl::Status s = check();
        if (!s.ok()) return s;
      }
      return HostWaitDeadlineError(what, timeout, policy.step ? policy.step() : -1);
    }
    if (now - start > absl::Milliseconds(100) && now - last_report > absl::Milliseconds(5)) {
      last_report = now;
      if (policy.on_long_wait) {
        std::string pending;
        for (const auto& describe : describers) {
          if (!(pending = describe()).empty()) break;
        }
        policy.on_long_wait(pending.empty() ? what : pending);
      }
    }
    if (polls < 256) continue;
    if (now - start > absl::Milliseconds(5)) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    } else {
      sched_yield();
    }
  }
}

}  // namespace loom
