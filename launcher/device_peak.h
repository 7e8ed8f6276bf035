// The peak a device could reach, for MFU and benchmark rooflines. For the CPU loom measures
// it: the best sgemm rate over a few 1024^3 products on the threads this rank has, and a
// large memcpy bandwidth. For known GPUs it is the datasheet dense bf16 rate and HBM
// bandwidth (H100/H200: ~790 TFLOP/s as measured on H200, 4.3-4.8 TB/s); unknown GPUs give 0,
// and MFU is then not reported rather than guessed.
#pragma once

#include <string>

#include "runtime/device.h"

namespace loom {

struct DevicePeak {
  double flops = 0;           // FLOP/s of the main matmul path
  double bytes_per_s = 0;     // memory bandwidth
  std::string source;         // "measured sgemm" / "H200 datasheet" / "unknown"
};

// Measures (CPU, ~0.3 s, cached after the first call) or looks up (GPU) the device's peak.
DevicePeak GetDevicePeak(Device* device);

}  // namespace loom
