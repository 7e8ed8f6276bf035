// The Philox header compiled with FMA contraction forced on (-mfma -ffp-contract=fast, set in
// CMakeLists.txt), inside an anonymous namespace so these copies of the inline functions cannot
// replace the normal ones at link time. philox_test.cc compares the two: the normal stream must
// not depend on whether the host compiler fuses a*b+c.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tests/runtime/philox_contracted.h"

// The host fill functions are declared but not defined in this namespace; they are not used.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
namespace {
#include "runtime/philox.h"
}  // namespace
#pragma GCC diagnostic pop

namespace loom_test {

bool ContractedBuildHasFma() {
#ifdef __FMA__
  return true;
#else
  return false;
#endif
}

void ContractedNormals(uint64_t seed, uint64_t start, size_t n, float mean, float stddev,
                       float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = loom::NormalAt(seed, start + i, mean, stddev);
}

}  // namespace loom_test
