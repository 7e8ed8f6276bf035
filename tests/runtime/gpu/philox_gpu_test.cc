// The Philox stream on a GPU equals the host stream bit for bit, with default and with
// --use_fast_math device flags; this is what lets a model initialised on any device and any
// parallel layout start from the same weights.
#include <gtest/gtest.h>

#include <cstring>

#include "runtime/device.h"
#include "runtime/philox.h"
#include "tests/runtime/gpu/philox_kernels.h"

namespace loom {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void CheckAgainstHost(const loom_test::PhiloxGpuOutputs& gpu, uint64_t seed, uint64_t start,
                      size_t n, float mean, float stddev) {
  ASSERT_EQ(gpu.normal.size(), n);
  std::vector<float> host(n), host_u(n);
  FillNormal(host.data(), n, mean, stddev, seed, start);
  FillUniform(host_u.data(), n, seed, start);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(Bits(gpu.normal[i]), Bits(host[i]))
        << "NormalAt element " << start + i << ": gpu " << gpu.normal[i] << " host " << host[i];
    ASSERT_EQ(Bits(gpu.normal4[i]), Bits(host[i])) << "Normal4At element " << start + i;
    ASSERT_EQ(Bits(gpu.uniform[i]), Bits(host_u[i])) << "UniformAt element " << start + i;
  }
}

class PhiloxGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device: " << CudaUnavailableReason();
  }
};

TEST_F(PhiloxGpuTest, MatchesHostBitForBit) {
  const size_t n = 1 << 20;
  for (auto [seed, start] : {std::pair<uint64_t, uint64_t>{1234, 0},
                             {0xfedcba9876543210ull, (1ull << 33) + 3}}) {
    loom_test::PhiloxGpuOutputs gpu;
    std::string err = loom_test::RunPhiloxKernels(seed, start, n, 0.25f, 0.02f, &gpu);
    ASSERT_EQ(err, "");
    CheckAgainstHost(gpu, seed, start, n, 0.25f, 0.02f);
  }
}

TEST_F(PhiloxGpuTest, FastMathDoesNotChangeTheStream) {
  const size_t n = 1 << 20;
  loom_test::PhiloxGpuOutputs gpu;
  std::string err = loom_test::RunPhiloxKernelsFastMath(77, 5, n, 0.0f, 1.0f, &gpu);
  ASSERT_EQ(err, "");
  CheckAgainstHost(gpu, 77, 5, n, 0.0f, 1.0f);
}

}  // namespace
}  // namespace loom
