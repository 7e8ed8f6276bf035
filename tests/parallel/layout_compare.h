// What the layout-equivalence tests (tensor_parallel_train_test, pipeline_train_test) compare
// between a run on some layout and the 1-rank run of the same job: per-step losses and gradient
// norms to 1e-5 relative, and the final weights (global layout) by relative L2 distance over the
// whole model. Element by element, Adam amplifies the rounding differences of another summation
// order for weights whose gradient is near zero (its update is m / sqrt(v), close to +-lr
// whatever the gradient's size), so a per-element bound would test rounding, not the layout.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace loom::testing {

struct TrainRun {
  std::vector<float> losses;
  std::vector<double> grad_norms;
  std::vector<float> weights;  // the whole model, global layout
};

inline void ExpectSameTraining(const TrainRun& got, const TrainRun& ref, const std::string& what) {
  ASSERT_EQ(got.losses.size(), ref.losses.size()) << what;
  for (size_t i = 0; i < ref.losses.size(); ++i) {
    EXPECT_NEAR(got.losses[i], ref.losses[i], 1e-5 * std::fabs(ref.losses[i]))
        << what << ": loss at step " << i + 1;
    EXPECT_NEAR(got.grad_norms[i], ref.grad_norms[i], 1e-5 * ref.grad_norms[i])
        << what << ": gradient norm at step " << i + 1;
  }
  ASSERT_EQ(got.weights.size(), ref.weights.size()) << what;
  double diff = 0, norm = 0, worst = 0;
  for (size_t i = 0; i < ref.weights.size(); ++i) {
    const double d = static_cast<double>(got.weights[i]) - ref.weights[i];
    diff += d * d;
    norm += static_cast<double>(ref.weights[i]) * ref.weights[i];
    worst = std::max(worst, std::fabs(d));
  }
  const double rel = std::sqrt(diff / norm);
  EXPECT_LE(rel, 1e-5) << what << ": final weights differ from 1 rank by " << rel
                       << " (relative L2), largest element difference " << worst;
}

}  // namespace loom::testing
