// CPU kernel of ops/decode_attention.h: plain loops, one (token, head) at a time, fp32 scores
// with a double sum. Templated so tests may run it in double.
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

template <typename T>
void DecodeAttention(const T* cache, int nh, int nkv, int hd, int64_t pos0, int64_t n, T* out);

}  // namespace loom::ops::cpu
