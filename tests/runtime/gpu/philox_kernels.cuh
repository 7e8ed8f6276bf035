// The Philox test kernels; included once per build flavour by philox_kernels.cu (default flags)
// and philox_kernels_fast.cu (--use_fast_math), which define LOOM_PHILOX_RUN_NAME.
#include <cuda_runtime.h>

#include "runtime/philox.h"
#include "tests/runtime/gpu/philox_kernels.h"

namespace {

__global__ void NormalKernel(uint64_t seed, uint64_t start, size_t n, float mean, float stddev,
                             float* out) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = loom::NormalAt(seed, start + i, mean, stddev);
}

__global__ void Normal4Kernel(uint64_t seed, uint64_t start, size_t n, float mean, float stddev,
                              float* out) {
  uint64_t block = start / 4 + blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  if (4 * block >= start + n) return;
  loom::Float4 z = loom::Normal4At(seed, block);
  for (int lane = 0; lane < 4; ++lane) {
    uint64_t index = 4 * block + lane;
    if (index >= start && index < start + n) {
      out[index - start] = loom::philox_internal::Fma(stddev, z.v[lane], mean);
    }
  }
}

__global__ void UniformKernel(uint64_t seed, uint64_t start, size_t n, float* out) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = loom::UniformAt(seed, start + i);
}

#define LOOM_TRY(call)                                                                    \
  do {                                                                                    \
    cudaError_t rc_ = (call);                                                             \
    if (rc_ != cudaSuccess) {                                                             \
      cudaFree(dev);                                                                      \
      return std::string(#call) + " failed: " + cudaGetErrorString(rc_);                  \
    }                                                                                     \
  } while (0)

}  // namespace

namespace loom_test {

std::string LOOM_PHILOX_RUN_NAME(uint64_t seed, uint64_t start, size_t n, float mean, float stddev,
                                 PhiloxGpuOutputs* out) {
  float* dev = nullptr;
  LOOM_TRY(cudaMalloc(&dev, 3 * n * sizeof(float)));
  const int threads = 256;
  unsigned grid = static_cast<unsigned>((n + threads - 1) / threads);
  unsigned grid4 = static_cast<unsigned>((n / 4 + 2 + threads - 1) / threads);
  NormalKernel<<<grid, threads>>>(seed, start, n, mean, stddev, dev);
  Normal4Kernel<<<grid4, threads>>>(seed, start, n, mean, stddev, dev + n);
  UniformKernel<<<grid, threads>>>(seed, start, n, dev + 2 * n);
  LOOM_TRY(cudaGetLastError());
  out->normal.resize(n);
  out->normal4.resize(n);
  out->uniform.resize(n);
  LOOM_TRY(cudaMemcpy(out->normal.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost));
  LOOM_TRY(cudaMemcpy(out->normal4.data(), dev + n, n * sizeof(float), cudaMemcpyDeviceToHost));
  LOOM_TRY(cudaMemcpy(out->uniform.data(), dev + 2 * n, n * sizeof(float),
                      cudaMemcpyDeviceToHost));
  LOOM_TRY(cudaFree(dev));
  return "";
}

}  // namespace loom_test
