#include "runtime/timer.h"

#include <gtest/gtest.h>

#include <thread>

namespace loom {
namespace {

TEST(TimerTest, MeasuresElapsedTimeAndResets) {
  Timer timer;
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  double ms = timer.Millis();
  double s = timer.Seconds();
  EXPECT_GE(ms, 30.0);
  EXPECT_LT(ms, 5000.0);  // generous: a loaded 2-core machine
  EXPECT_GE(s, ms / 1000.0);  // read later, so never smaller
  EXPECT_LT(s, ms / 1000.0 + 1.0);
  timer.Reset();
  EXPECT_LT(timer.Millis(), ms);
  double a = timer.Seconds(), b = timer.Seconds();
  EXPECT_LE(a, b);  // monotonic
}

}  // namespace
}  // namespace loom
