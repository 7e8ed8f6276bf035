// CUDA kernel of ops/decode_attention.h, f32 or bf16 cache, fp32 math, on the device's op
// stream. Grid (n new tokens, NH heads), 128 threads: the query head in shared memory, every
// score of the cached keys in shared memory (4 bytes per position: 32 KiB at 8192), a block
// max and sum, then each thread accumulates head-dim columns over the keys. No T x T work.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

// Arguments checked by ops/decode_attention.cc.
absl::Status DecodeAttention(const Tensor& cache, int nh, int nkv, int hd, int64_t pos0, int64_t n,
                             const Tensor& out);

}  // namespace loom::ops::cuda
