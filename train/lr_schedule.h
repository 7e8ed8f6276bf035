// Learning-rate schedule: linear warmup from lr/warmup to lr over `warmup_steps`, then cosine
// or linear decay to min_lr at total_steps (constant stays at lr). Steps are 0-based here:
// LearningRate(0) is the rate of the first optimizer step. Past total_steps it stays at min_lr.
#pragma once

#include <cstdint>

#include "proto/job.pb.h"

namespace loom {

double LearningRate(const JobConfig& config, int64_t step);

}  // namespace loom
