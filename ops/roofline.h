// The ceilings `loom bench ops` measures each op against. On the CPU both are measured at
// start-up on the threads the run has: the best cblas_sgemm rate over two GEMM shapes (a cube
// and a GPT-2 MLP product) and the bandwidth of an OpenMP-parallel memcpy, counting bytes read
// plus bytes written (the same accounting the ops' byte counts use). On a GPU they are the
// datasheet peaks of the part (GpuPartFor: H100 SXM, H100 PCIe, H100 NVL, H200, H200 NVL told
// apart by name, SM count and memory size), dense bf16 tensor-core FLOP/s and HBM bandwidth;
// the description says so, and a measured copy rate is reported beside them. An unknown GPU
// is an error rather than a guess.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "runtime/device.h"

namespace loom::bench {

// One GPU part's datasheet figures (dense, i.e. without 2:4 sparsity).
struct GpuPart {
  std::string name;            // "H100 SXM"
  double bf16_flops = 0;       // dense bf16 tensor-core FLOP/s
  double tf32_flops = 0;       // dense tf32 tensor-core FLOP/s (fp32 GEMMs with TF32 allowed)
  double fp32_flops = 0;       // fp32 FMA FLOP/s without tensor cores
  double hbm_bytes_per_s = 0;  // HBM bandwidth
};

// The part behind a CUDA device, from what the driver reports: its name ("NVIDIA H100 80GB
// HBM3", "NVIDIA H100 PCIe", "NVIDIA H200"), SM count and memory. The H100 SXM and PCIe differ
// in SMs (132 vs 114), the H100 NVL in memory (94 GB), the H200 in name and memory (141 GB).
// NotFound (naming the three inputs and this file) for a part loom has no figures for.
absl::StatusOr<GpuPart> GpuPartFor(const std::string& device_name, int sm_count,
                                   size_t memory_bytes);

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

// A cached CPU peak can be an underestimate (measured while the machine was busy): a step that
// then runs faster than it would report an MFU above 100%. The trainer raises this process's
// entry to `flops` when a step achieved more (an entry already at or above it stays); true when
// the cache was rewritten, false when nothing was to do (a GPU, no cache path, a higher entry).
absl::StatusOr<bool> RaiseCachedGemmPeak(Device* device, double flops);

// $XDG_CACHE_HOME/loom/gemm_peak.tsv, else $HOME/.cache/loom/gemm_peak.tsv; empty when neither
// variable is set (then nothing is cached).
std::string GemmPeakCachePath();

}  // namespace loom::bench
