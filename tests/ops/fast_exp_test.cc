// ExpF (ops/cpu/fast_exp.h), the exponential of softmax, GeLU and SiLU: close to std::exp over
// the clamped range, and a NaN in gives a NaN out without undefined behaviour (it once
// converted NaN to int: UBSan in the sanitizer stage caught it through trainer_test's NaN step).
#include "ops/cpu/fast_exp.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace loom::ops::cpu {
namespace {

TEST(FastExpTest, CloseToStdExp) {
  for (float x = -80.0f; x <= 80.0f; x += 0.37f) {
    const float want = std::exp(x);
    EXPECT_NEAR(ExpF(x), want, want * 4e-7f) << x;
  }
}

TEST(FastExpTest, NanInNanOutAndInfinitiesClamped) {
  EXPECT_TRUE(std::isnan(ExpF(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_GT(ExpF(std::numeric_limits<float>::infinity()), 1e38f);
  EXPECT_LT(ExpF(-std::numeric_limits<float>::infinity()), 1e-37f);
}

}  // namespace
}  // namespace loom::ops::cpu
