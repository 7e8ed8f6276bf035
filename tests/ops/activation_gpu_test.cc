// CUDA vs CPU for ops/activation.h (label gpu; skips without a device).
// Tolerances: fp32 rtol 1e-5, atol 1e-6 (tanhf / expf differ from the CPU libm by a few ulp);
// bf16 inputs are rounded for the CPU reference as well and the one output rounding allows
// rtol 1e-2, atol 1e-2. Lengths are not multiples of the vector width, and views offset by
// one element exercise the unaligned scalar path.
#include <vector>

#include "gtest/gtest.h"
#include "ops/activation.h"
#include "tests/ops/gpu_test_util.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Gpu;
using ::loom::testing::HostValues;
using ::loom::testing::MakeTensor;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

struct ActCase {
  DType dtype;
  int64_t offset;  // elements skipped at the start of each device buffer (1 = unaligned)
};

class ActivationGpuTest : public ::testing::TestWithParam<ActCase> {
 protected:
  DType dt() const { return GetParam().dtype; }
  double Rtol() const { return dt() == DType::kF32 ? 1e-5 : 1e-2; }
  double Atol() const { return dt() == DType::kF32 ? 1e-6 : 1e-2; }
  // A device tensor of `shape` holding v, starting `offset` elements into its buffer.
  Tensor Device(const std::vector<float>& v, const Shape& shape) {
    const int64_t off = GetParam().offset;
    std::vector<float> padded(off, 0.0f);
    padded.insert(padded.end(), v.begin(), v.end());
    Tensor base = MakeTensor(padded, {static_cast<int64_t>(padded.size())}, dt(), Gpu());
    keep_.push_back(base);
    return *base.FlatView(off, v.size()).Reshape(shape);
  }
  Tensor DeviceZeros(const Shape& shape) {
    return Device(std::vector<float>(shape.numel(), 0.0f), shape);
  }
  std::vector<Tensor> keep_;
};

TEST_P(ActivationGpuTest, GeluForwardAndBackward) {
  LOOM_SKIP_WITHOUT_CUDA();
  const Shape s{13, 37};
  const auto x_v = RoundTo(RandomFloats(s.numel(), 1, -5.0f, 5.0f), dt());
  const auto d_v = RoundTo(RandomFloats(s.numel(), 2), dt());
  Tensor x = Device(x_v, s), dout = Device(d_v, s), out = DeviceZeros(s), dx = DeviceZeros(s);
  ASSERT_TRUE(GeluForward(x, out).ok());
  ASSERT_TRUE(GeluBackward(dout, x, dx).ok());
  Tensor c_x = Tensor::FromVector(x_v, s), c_d = Tensor::FromVector(d_v, s);
  Tensor c_out = *Tensor::Zeros(s, DType::kF32, CpuDevice());
  Tensor c_dx = *Tensor::Zeros(s, DType::kF32, CpuDevice());
  ASSERT_TRUE(GeluForward(c_x, c_out).ok());
  ASSERT_TRUE(GeluBackward(c_d, c_x, c_dx).ok());
  EXPECT_TRUE(AllClose(HostValues(out), HostValues(c_out), Rtol(), Atol()));
  EXPECT_TRUE(AllClose(HostValues(dx), HostValues(c_dx), Rtol(), Atol()));
}

TEST_P(ActivationGpuTest, SwiGLUForwardAndBackward) {
  LOOM_SKIP_WITHOUT_CUDA();
  // h = 24 is a multiple of both vector widths (4 f32, 8 bf16); h = 7 is not.
  for (int64_t h : {24, 7}) {
    const int64_t n = 9;
    const auto inp_v = RoundTo(RandomFloats(n * 2 * h, 3, -4.0f, 4.0f), dt());
    const auto d_v = RoundTo(RandomFloats(n * h, 4), dt());
    Tensor inp = Device(inp_v, {n, 2 * h}), dout = Device(d_v, {n, h});
    Tensor out = DeviceZeros({n, h}), dinp = DeviceZeros({n, 2 * h});
    ASSERT_TRUE(SwiGLUForward(inp, out).ok());
    ASSERT_TRUE(SwiGLUBackward(dout, inp, dinp).ok());
    Tensor c_inp = Tensor::FromVector(inp_v, {n, 2 * h});
    Tensor c_out = *Tensor::Zeros({n, h}, DType::kF32, CpuDevice());
    Tensor c_dinp = *Tensor::Zeros({n, 2 * h}, DType::kF32, CpuDevice());
    ASSERT_TRUE(SwiGLUForward(c_inp, c_out).ok());
    ASSERT_TRUE(SwiGLUBackward(Tensor::FromVector(d_v, {n, h}), c_inp, c_dinp).ok());
    EXPECT_TRUE(AllClose(HostValues(out), HostValues(c_out), Rtol(), Atol())) << "h=" << h;
    EXPECT_TRUE(AllClose(HostValues(dinp), HostValues(c_dinp), Rtol(), Atol())) << "h=" << h;
  }
}

TEST_P(ActivationGpuTest, AddInPlace) {
  LOOM_SKIP_WITHOUT_CUDA();
  const Shape s{3, 41};
  const auto a_v = RoundTo(RandomFloats(s.numel(), 5), dt());
  const auto b_v = RoundTo(RandomFloats(s.numel(), 6), dt());
  Tensor a = Device(a_v, s), b = Device(b_v, s);
  ASSERT_TRUE(Add(a, b, a).ok());
  std::vector<float> want(a_v.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = a_v[i] + b_v[i];
  EXPECT_TRUE(AllClose(HostValues(a), RoundTo(want, dt()), 0.0, 0.0));
}

INSTANTIATE_TEST_SUITE_P(DTypesAndAlignment, ActivationGpuTest,
                         ::testing::Values(ActCase{DType::kF32, 0}, ActCase{DType::kF32, 1},
                                           ActCase{DType::kBF16, 0}, ActCase{DType::kBF16, 1}));

}  // namespace
}  // namespace loom::ops
