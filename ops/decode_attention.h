// Attention of new tokens against a KV cache, for generation (model/generator.h): the cache
// holds the packed qkv rows of every position so far, so a decoding step computes its q, k, v
// once and attends over the cached keys (O(L) per token) instead of re-running the sequence.
// CPU: loops over the cached keys; GPU: one block per (new token, head), scores in shared memory.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// cache: [L, (NH + 2*NKV) * HD], rows = positions 0..L-1 in ops/attention.h's packed layout (q
// heads, k heads, v heads); rows [pos0, pos0 + n) are the new tokens (L >= pos0 + n).
// out: [n, NH * HD], cache's dtype: row i is position pos0 + i attending to the keys of
// positions 0..pos0 + i with scale 1/sqrt(HD) (query head h reads kv head h / (NH / NKV)) --
// rows [pos0, pos0 + n) of AttentionForward on the first pos0 + n rows as one sequence.
absl::Status DecodeAttention(const Tensor& cache, int n_head, int n_kv_head, int64_t pos0,
                             int64_t n, const Tensor& out);

}  // namespace loom::ops
