// CUDA vs CPU for ops/rope.h (label gpu; skips without a device).
// Both backends build the angle the same way (float inv_freq, float pos * inv_freq, cos/sin
// in double), so even at positions in the thousands they agree to rounding of the rotation:
// f32 rtol 1e-5 / atol 1e-5; bf16 (inputs rounded for the CPU too, one output rounding)
// rtol 1e-2 / atol 1e-2.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/rope.h"
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

struct RopeCase {
  int64_t b, t;
  int nh, nkv, hd;
  int64_t pos_offset;
};

class RopeGpuTest : public ::testing::TestWithParam<DType> {};

TEST_P(RopeGpuTest, ForwardAndBackwardMatchCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  const DType dt = GetParam();
  const double rtol = dt == DType::kF32 ? 1e-5 : 1e-2, atol = rtol;
  for (const RopeCase& c : {RopeCase{2, 37, 4, 2, 64, 0}, RopeCase{1, 9, 3, 3, 128, 4000},
                            RopeCase{2, 5, 2, 1, 8, 7}}) {
    SCOPED_TRACE(::testing::Message() << "T " << c.t << " NH " << c.nh << " NKV " << c.nkv << " HD "
                                      << c.hd << " offset " << c.pos_offset);
    const Shape s{c.b, c.t, static_cast<int64_t>(c.nh + 2 * c.nkv) * c.hd};
    const auto x = RoundTo(RandomFloats(s.numel(), 1, -2.0f, 2.0f), dt);
    Tensor g = MakeTensor(x, s, dt, Gpu());
    Tensor cpu = Tensor::FromVector(x, s);
    ASSERT_TRUE(RopeForward(g, c.nh, c.nkv, 10000.0f, c.pos_offset).ok());
    ASSERT_TRUE(RopeForward(cpu, c.nh, c.nkv, 10000.0f, c.pos_offset).ok());
    EXPECT_TRUE(AllClose(HostValues(g), HostValues(cpu), rtol, atol));

    const auto d = RoundTo(RandomFloats(s.numel(), 2), dt);
    Tensor gd = MakeTensor(d, s, dt, Gpu());
    Tensor cd = Tensor::FromVector(d, s);
    ASSERT_TRUE(RopeBackward(gd, c.nh, c.nkv, 10000.0f, c.pos_offset).ok());
    ASSERT_TRUE(RopeBackward(cd, c.nh, c.nkv, 10000.0f, c.pos_offset).ok());
    EXPECT_TRUE(AllClose(HostValues(gd), HostValues(cd), rtol, atol));
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, RopeGpuTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace loom::ops
