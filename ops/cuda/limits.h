// What the CUDA kernels can run, as plain numbers (no CUDA headers), so that the job check
// (job/job_check.h) refuses a shape before a job starts rather than at its first
// attention call on the GPU. The kernels check the same limits again at launch.
#pragma once

#include <cstdint>

namespace loom::ops::cuda {

// Attention kernels are compiled for padded head dims 64 and 128 (ops/cuda/attention.cu,
// attention_tc.cu): hidden / heads must be at most this.
inline constexpr int kMaxAttentionHeadDim = 128;
// Attention launches one block row per (sequence, head): gridDim.y = micro-batch x local heads
// (query heads for the forward and dQ kernels, kv heads for dK/dV), at most CUDA's 65535.
inline constexpr int64_t kMaxGridY = 65535;

}  // namespace loom::ops::cuda
