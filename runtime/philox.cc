#include "runtime/philox.h"

namespace loom {

void FillNormal(float* out, size_t n, float mean, float stddev, uint64_t seed,
                uint64_t start_index) {
  // One Philox call per block of four; the ends of the range may cover part of a block.
  size_t i = 0;
  while (i < n) {
    uint64_t index = start_index + i;
    uint64_t block = index >> 2;
    Float4 z = Normal4At(seed, block);
    for (unsigned lane = static_cast<unsigned>(index & 3); lane < 4 && i < n; ++lane, ++i) {
      out[i] = philox_internal::Fma(stddev, z.v[lane], mean);
    }
  }
}

void FillUniform(float* out, size_t n, uint64_t seed, uint64_t start_index) {
  size_t i = 0;
  while (i < n) {
    uint64_t index = start_index + i;
    Uint32x4 x = PhiloxBlock(seed, index >> 2);
    for (unsigned lane = static_cast<unsigned>(index & 3); lane < 4 && i < n; ++lane, ++i) {
      out[i] = WordToUniform(x.v[lane]);
    }
  }
}

}  // namespace loom
