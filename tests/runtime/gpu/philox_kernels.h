// Host entry points of the Philox CUDA test kernels (philox_kernels.cu, built normally, and
// philox_kernels_fast.cu, built with --use_fast_math). Plain C++: the test itself is compiled
// by the host compiler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loom_test {

struct PhiloxGpuOutputs {
  std::vector<float> normal;   // NormalAt(seed, start + i, mean, stddev), one thread per element
  std::vector<float> normal4;  // the same elements through Normal4At, one thread per block
  std::vector<float> uniform;  // UniformAt(seed, start + i)
};

// Runs the kernels on GPU 0. Returns "" on success, else what failed.
std::string RunPhiloxKernels(uint64_t seed, uint64_t start, size_t n, float mean, float stddev,
                             PhiloxGpuOutputs* out);
std::string RunPhiloxKernelsFastMath(uint64_t seed, uint64_t start, size_t n, float mean,
                                     float stddev, PhiloxGpuOutputs* out);

}  // namespace loom_test
