#include "launcher/device_peak.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/timer.h"

namespace loom {
namespace {

double MeasureSgemmFlops() {
  const int n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n, 0.0f);
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    Timer t;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(),
                n, 0.0f, c.data(), n);
    double s = t.Seconds();
    if (rep > 0) best = std::max(best, 2.0 * n * n * n / s);  // the first run warms up
  }
  return best;
}

double MeasureMemcpyBandwidth() {
  const size_t bytes = size_t{64} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    Timer t;
    std::memcpy(dst.data(), src.data(), bytes);
    double s = t.Seconds();
    best = std::max(best, 2.0 * bytes / s);  // read + write
  }
  return best;
}

}  // namespace

DevicePeak GetDevicePeak(Device* device) {
  if (device->is_cpu()) {
    static DevicePeak cpu = [] {
      DevicePeak p;
      p.flops = MeasureSgemmFlops();
      p.bytes_per_s = MeasureMemcpyBandwidth();
      p.source = "measured: sgemm 1024^3 and a 64 MiB memcpy";
      return p;
    }();
    return cpu;
  }
  DevicePeak p;
  const std::string name = device->Name();
  if (name.find("H200") != std::string::npos) {
    p = {790e12, 4.8e12, "H200: ~790 TFLOP/s dense bf16, 4.8 TB/s HBM3e"};
  } else if (name.find("H100") != std::string::npos) {
    p = {790e12, 3.35e12, "H100 SXM: ~790 TFLOP/s dense bf16, 3.35 TB/s HBM3"};
  } else if (name.find("A100") != std::string::npos) {
    p = {312e12, 2.0e12, "A100: 312 TFLOP/s dense bf16, ~2 TB/s"};
  } else {
    p.source = "unknown device " + name;
  }
  return p;
}

}  // namespace loom
