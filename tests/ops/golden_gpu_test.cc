// PyTorch golden tests of the CUDA ops in fp32: the same fixtures and checks as the CPU
// golden_test.cc (golden_cases.h), with inputs copied to the GPU. The tolerance is 1e-4
// relative + 1e-5 absolute: the kernels sum in other orders than the CPU and use the GPU's
// exp/tanh, which are a few ulp off. (bf16 paths are checked against the CPU ops by each
// family's CUDA-vs-CPU test.) Skips when no GPU answers.
#include <string>

#include "gtest/gtest.h"
#include "runtime/device.h"
#include "tests/ops/golden_cases.h"

namespace loom::testing {
namespace {

constexpr Tolerance kGpuFp32{1e-4, 1e-5};

class GoldenCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no GPU: " << CudaUnavailableReason();
    auto dev = CudaDevice(0);
    ASSERT_TRUE(dev.ok()) << dev.status();
    dev_ = *dev;
  }
  Device* dev_ = nullptr;
};

TEST_F(GoldenCuda, Linear) {
  for (const char* name : {"linear", "linear_nobias", "linear_gelu"}) {
    SCOPED_TRACE(name);
    CheckLinear(name, dev_, kGpuFp32);
  }
}
TEST_F(GoldenCuda, Gemm) {
  for (const char* name : {"gemm_nn", "gemm_tn", "gemm_nt", "gemm_tt"}) {
    SCOPED_TRACE(name);
    CheckGemm(name, dev_, kGpuFp32);
  }
}
TEST_F(GoldenCuda, Activations) {
  CheckGelu(dev_, kGpuFp32);
  CheckSwiGLU(dev_, kGpuFp32);
  CheckAdd(dev_, kGpuFp32);
}
TEST_F(GoldenCuda, Embedding) {
  CheckEmbedding("embedding", dev_, kGpuFp32);
  CheckEmbedding("embedding_vocab_slice", dev_, kGpuFp32);
}
TEST_F(GoldenCuda, Norms) {
  CheckLayerNorm(dev_, kGpuFp32);
  CheckRMSNorm(dev_, kGpuFp32);
  CheckFusedResidualLayerNorm(dev_, kGpuFp32);
  CheckFusedResidualRMSNorm(dev_, kGpuFp32);
}
TEST_F(GoldenCuda, Rope) { CheckRope(dev_, kGpuFp32); }
TEST_F(GoldenCuda, Attention) {
  CheckAttention("attention_mha", dev_, kGpuFp32);
  CheckAttention("attention_gqa", dev_, kGpuFp32);
}
TEST_F(GoldenCuda, CrossEntropy) {
  CheckCrossEntropy("cross_entropy", dev_, kGpuFp32);
  CheckCrossEntropy("cross_entropy_padded", dev_, kGpuFp32);
  CheckVocabParallelCrossEntropy(dev_, kGpuFp32);
}
TEST_F(GoldenCuda, Optimizer) {
  CheckAdamW(dev_, kGpuFp32);
  CheckSumOfSquares(dev_, kGpuFp32);
}

}  // namespace
}  // namespace loom::testing
