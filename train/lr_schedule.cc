#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace loom {

double LearningRate(const JobConfig& config, int64_t step) {
  const double lr = config.optimizer().lr();
  const double min_lr = config.lr_schedule().min_lr();
  const int64_t warmup = config.lr_schedule().warmup_steps();
  const int64_t total = config.lr_schedule().total_steps();
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const auto style = config.lr_schedule().decay_style();
  if (style == LrScheduleConfig::CONSTANT || total <= warmup) return lr;
  const double progress =
      std::clamp(static_cast<double>(step - warmup) / static_cast<double>(total - warmup), 0.0, 1.0);
  if (style == LrScheduleConfig::LINEAR) return lr + (min_lr - lr) * progress;
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace loom
