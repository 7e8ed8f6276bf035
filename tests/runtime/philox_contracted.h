// Entry points into philox_contracted.cc (see there).
#pragma once

#include <cstddef>
#include <cstdint>

namespace loom_test {

// Whether philox_contracted.cc was really built with FMA code generation.
bool ContractedBuildHasFma();
// out[i] = NormalAt(seed, start + i, mean, stddev) from the contracted build. Only call when the
// CPU supports FMA.
void ContractedNormals(uint64_t seed, uint64_t start, size_t n, float mean, float stddev,
                       float* out);

}  // namespace loom_test
