// The trainer's guards against a bad step and a scheduler's time limit (declared in
// train/trainer.h): kept apart from the training step so each reads on its own.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "train/trainer.h"
#include "runtime/logging.h"
#include "runtime/status.h"

namespace loom {

absl::StatusOr<bool> Trainer::SkipIfNonFinite(double loss, double grad_norm) {
  // One rank's view is not enough: with tensor or pipeline parallelism a loss or norm computed
  // on some ranks only could let ranks disagree, and a rank that skips while its peers step
  // leaves the job inconsistent. The count of ranks that saw a non-finite value is summed over
  // the world, so every rank decides alike.
  const bool bad_here = !std::isfinite(loss) || !std::isfinite(grad_norm);
  double bad[1] = {bad_here ? 1.0 : 0.0};
  LOOM_RETURN_IF_ERROR(world_->comm().AllReduceHost(absl::MakeSpan(bad, 1), ReduceOp::kSum));
  last_step_skipped_ = bad[0] > 0;
  if (!last_step_skipped_) {
    nonfinite_in_row_ = 0;
    return false;
  }
  ++skipped_steps_;
  ++nonfinite_in_row_;
  const int64_t step = step_ + 1;
  const int max_in_row = config_.runtime().max_nonfinite_steps();
  const std::string what = absl::StrCat("step ", step, ": training loss ", loss, ", gradient norm ",
                                        grad_norm, " (non-finite on ", static_cast<int>(bad[0]),
                                        " of ", world_->size(), " rank(s))");
  if (nonfinite_in_row_ >= max_in_row) {
    return absl::InternalError(absl::StrCat(
        what, ": ", nonfinite_in_row_,
        " non-finite step(s) in a row reached "
        "runtime.max_nonfinite_steps = ",
        max_in_row, ": the run diverged (lower optimizer.lr?); the poisoned state is not saved"));
  }
  LOOM_LOG(WARNING) << what << ": step skipped (weights and optimizer state untouched; "
                    << nonfinite_in_row_ << " in a row of at most " << max_in_row - 1 << ", "
                    << skipped_steps_ << " skipped in all)";
  return true;
}

bool Trainer::TimeIsUp() const {
  const int64_t limit = config_.runtime().max_duration_s();
  if (limit <= 0) return false;
  const double now = absl::ToDoubleSeconds(absl::Now() - start_time_);
  const double next_step = progress_->mean_step_s();
  return now + next_step + config_.runtime().stop_margin_s() >= static_cast<double>(limit);
}

}  // namespace loom
