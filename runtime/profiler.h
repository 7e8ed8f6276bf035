// OpProfiler: wall time per op family ("linear", "attention", ...) for `loom bench step`'s
// breakdown. Off by default, and then a Scope costs one branch. When on, a Scope synchronises
// its device before and after the op so GPU time is charged to the op that spent it (that
// serialises the GPU: only benchmarks turn it on).
#pragma once

#include <map>
#include <string>

#include "runtime/device.h"
#include "runtime/timer.h"

namespace loom {

struct OpTime {
  double seconds = 0;
  int64_t calls = 0;
};

class OpProfiler {
 public:
  static void Enable(bool on);
  static bool enabled();
  static void Reset();
  // family -> accumulated time, since the last Reset().
  static std::map<std::string, OpTime> Report();

  class Scope {
   public:
    Scope(const char* family, Device* device);
    ~Scope();

   private:
    const char* family_;
    Device* device_;
    Timer timer_;
  };
};

}  // namespace loom
