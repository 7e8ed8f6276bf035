// The ceilings `loom bench ops` measures each op against. On the CPU both are measured at
// start-up on the threads the run has: the best cblas_sgemm rate over two GEMM shapes (a cube
// and a GPT-2 MLP product) and the bandwidth of an OpenMP-parallel memcpy, counting bytes read
// plus bytes written (the same accounting the ops' byte counts use). On a GPU they are the
// assumed peaks of the named part (H100/H200: ~790 TFLOP/s dense bf16, as measured on an H200,
// and ~4.3 TB/s, the device-to-device copy rate measured there); the description says so,
// and a measured copy rate is reported beside them. An unknown GPU is an error rather than a
// guess.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "runtime/device.h"

namespace loom::bench {

struct Roofline {
  double flops = 0;              // FLOP/s of the GEMM path (fp32 sgemm on CPU, bf16 on GPU)
  double bytes_per_s = 0;        // memory bandwidth, read + write bytes per second
  double measured_copy_bps = 0;  // a measured device copy rate (== bytes_per_s on the CPU)
  std::string description;       // how the two were obtained, one line per ceiling
};

// Measures the CPU ceilings (~1 s) or looks up the GPU's; `device` names which.
absl::StatusOr<Roofline> GetRoofline(Device* device);

// The GEMM peak the trainer's MFU divides by, without the cost of measuring it on every run.
// CPU: the measured sgemm rate (as in GetRoofline), cached per machine in GemmPeakCachePath()
// under the key (CPU model, OpenMP threads, OpenBLAS threads); only a run that finds no entry
// measures (~1 s) and adds one. A cache that cannot be read or written only costs the
// measurement. GPU: the assumed peak of the named part (no copy measurement).
struct GemmPeakFlops {
  double flops = 0;
  std::string description;  // how it was obtained, one line
};
absl::StatusOr<GemmPeakFlops> GemmPeak(Device* device);

// $XDG_CACHE_HOME/loom/gemm_peak.tsv, else $HOME/.cache/loom/gemm_peak.tsv; empty when neither
// variable is set (then nothing is cached).
std::string GemmPeakCachePath();

}  // namespace loom::bench
