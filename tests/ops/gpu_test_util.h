// Helpers for the CUDA-vs-CPU op tests (tests/ops/*_gpu_test.cc): skipping without a GPU,
// moving float vectors to and from device tensors of any float dtype, and rounding host
// values the way the GPU will see them, so the CPU reference runs on identical inputs.
#pragma once

#include <vector>

#include "gtest/gtest.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

// Skips the current test, giving the reason, when no CUDA device answers.
#define LOOM_SKIP_WITHOUT_CUDA()                                             \
  do {                                                                       \
    if (::loom::CudaDeviceCount() == 0) {                                    \
      GTEST_SKIP() << "no CUDA device: " << ::loom::CudaUnavailableReason(); \
    }                                                                        \
  } while (0)

namespace loom::testing {

inline Device* Gpu() { return *CudaDevice(0); }

// A tensor on `device` holding `values` converted to `dtype` (round to nearest even).
inline Tensor MakeTensor(const std::vector<float>& values, const Shape& shape, DType dtype,
                         Device* device) {
  Tensor t = *Tensor::Empty(shape, dtype, device);
  EXPECT_TRUE(t.CopyFromFloats(values).ok());
  return t;
}

// The elements of t (any float dtype, any device) as floats.
inline std::vector<float> HostValues(const Tensor& t) { return *t.ToFloatVector(); }

// values as a tensor of `dtype` would hold them.
inline std::vector<float> RoundTo(const std::vector<float>& values, DType dtype) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::kBF16:
        out[i] = Bf16BitsToFloat(FloatToBf16Bits(values[i]));
        break;
      case DType::kF16:
        out[i] = F16BitsToFloat(FloatToF16Bits(values[i]));
        break;
      default:
        out[i] = values[i];
        break;
    }
  }
  return out;
}

}  // namespace loom::testing
