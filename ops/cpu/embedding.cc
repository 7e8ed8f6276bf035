#include "ops/cpu/embedding.h"

#include <algorithm>

namespace loom::ops::cpu {
namespace {

// Channels owned by one thread in the backward pass.
constexpr int64_t kChannelBlock = 32;

}  // namespace

template <typename T>
void EmbeddingForward(const int32_t* tokens, const T* wte, const T* wpe, T* out, int64_t b,
                      int64_t t, int64_t c, int64_t v, int64_t vocab_start,
                      const int32_t* positions) {
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < b * t; ++bt) {
    const int64_t row = static_cast<int64_t>(tokens[bt]) - vocab_start;
    const bool in_range = row >= 0 && row < v;
    const T* w = in_range ? wte + row * c : nullptr;
    const int64_t pos = positions != nullptr ? positions[bt] : bt % t;
    const T* p = wpe != nullptr ? wpe + pos * c : nullptr;
    T* o = out + bt * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      T value = in_range ? w[ch] : T(0);
      if (p != nullptr) value += p[ch];
      o[ch] = value;
    }
  }
}

template <typename T>
void EmbeddingBackward(const int32_t* tokens, const T* dout, T* dwte, T* dwpe, int64_t b, int64_t t,
                       int64_t c, int64_t v, int64_t vocab_start, const int32_t* positions) {
  const int64_t num_blocks = (c + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < num_blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock;
    const int64_t c1 = std::min(c, c0 + kChannelBlock);
    for (int64_t bt = 0; bt < b * t; ++bt) {
      const T* d = dout + bt * c;
      const int64_t row = static_cast<int64_t>(tokens[bt]) - vocab_start;
      if (row >= 0 && row < v) {
        T* w = dwte + row * c;
        for (int64_t ch = c0; ch < c1; ++ch) w[ch] += d[ch];
      }
      if (dwpe != nullptr) {
        const int64_t pos = positions != nullptr ? positions[bt] : bt % t;
        T* p = dwpe + pos * c;
        for (int64_t ch = c0; ch < c1; ++ch) p[ch] += d[ch];
      }
    }
  }
}

#define LOOM_INSTANTIATE_EMBEDDING(T)                                                             \
  template void EmbeddingForward<T>(const int32_t*, const T*, const T*, T*, int64_t, int64_t,     \
                                    int64_t, int64_t, int64_t, const int32_t*);                   \
  template void EmbeddingBackward<T>(const int32_t*, const T*, T*, T*, int64_t, int64_t, int64_t, \
                                     int64_t, int64_t, const int32_t*);
LOOM_INSTANTIATE_EMBEDDING(float)
LOOM_INSTANTIATE_EMBEDDING(double)
#undef LOOM_INSTANTIATE_EMBEDDING

}  // namespace loom::ops::cpu
