// Timer: wall time since construction or the last Reset(), on the monotonic clock, so that
// step times and throughput never jump when the system clock is adjusted.
#pragma once

#include <chrono>

namespace loom {

class Timer {
 public:
  Timer() : start_(Clock::now()) {}
  void Reset() { start_ = Clock::now(); }
  double Seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  double Millis() const {
    return std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
  }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
};

}  // namespace loom
