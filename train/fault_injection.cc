#include "train/fault_injection.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace loom {

namespace {

absl::StatusOr<int64_t> IntFromEnv(const char* name, int64_t fallback, int64_t min) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  int64_t out = 0;
  if (!absl::SimpleAtoi(v, &out) || out < min) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, "=\"", v, "\": expected an integer >= ", min));
  }
  return out;
}

}  // namespace

absl::StatusOr<FaultInjector> FaultInjector::FromEnv(int world_rank) {
  FaultInjector f;
  const char* kind = std::getenv("LOOM_FAULT");
  if (kind == nullptr || *kind == '\0') return f;
  const std::string k = kind;
  if (k == "stall") {
    f.kind_ = Kind::kStall;
  } else if (k == "exit") {
    f.kind_ = Kind::kExit;
  } else if (k == "nan") {
    f.kind_ = Kind::kNan;
  } else if (k == "nan_grad") {
    f.kind_ = Kind::kNanGrad;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("LOOM_FAULT=\"", k, "\": expected stall, exit, nan or nan_grad"));
  }
  auto rank = IntFromEnv("LOOM_FAULT_RANK", 0, 0);
  if (!rank.ok()) return rank.status();
  auto step = IntFromEnv("LOOM_FAULT_STEP", 1, 1);
  if (!step.ok()) return step.status();
  f.mine_ = *rank == world_rank;
  f.rank_ = world_rank;
  f.step_ = *step;
  return f;
}

absl::Status FaultInjector::AtStep(int64_t step, double* loss) const {
  if (!mine_ || step != step_) return absl::OkStatus();
  switch (kind_) {
    case Kind::kNone:
    case Kind::kNanGrad:  // AtGradients
      break;
    case Kind::kStall:
      std::cerr << "LOOM_FAULT: rank " << rank_ << " stalls at step " << step << " (sleeps, no MPI)"
                << std::endl;
      // A stop signal does not end the sleep: only a kill (mpirun's, after a peer's abort) does.
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    case Kind::kExit:
      std::cerr << "LOOM_FAULT: rank " << rank_ << " exits at step " << step << std::endl;
      _exit(1);
    case Kind::kNan:
      std::cerr << "LOOM_FAULT: rank " << rank_ << "'s loss is NaN at step " << step << std::endl;
      *loss = std::numeric_limits<double>::quiet_NaN();
      break;
  }
  return absl::OkStatus();
}

absl::Status FaultInjector::AtGradients(
    int64_t step, const Tensor& grads, const std::vector<FlatRange>& owned,
    const std::vector<std::pair<int64_t, int64_t>>& counted) const {
  if (kind_ != Kind::kNanGrad || !mine_ || step != step_) return absl::OkStatus();
  for (const FlatRange& own : owned) {
    for (const auto& [begin, end] : counted) {
      const int64_t at = std::max(begin, own.begin);
      if (at >= std::min(end, own.end)) continue;
      std::cerr << "LOOM_FAULT: rank " << rank_ << "'s gradient element " << at
                << " is NaN at step " << step << std::endl;
      return grads.FlatView(at, 1).CopyFromFloats({std::numeric_limits<float>::quiet_NaN()});
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("LOOM_FAULT=nan_grad: rank ", rank_, " counts no gradient element in the norm"));
}

}  // namespace loom
