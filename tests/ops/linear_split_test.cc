// ops::LinearBackwardInput then ops::LinearBackwardWeight (the ZERO_BUBBLE split of a linear
// layer's backward) equals ops::LinearBackward bit for bit, with and without a bias, and the
// weight half accumulates (+=) as the fused one does.
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "ops/linear.h"
#include "runtime/philox.h"
#include "runtime/tensor.h"

namespace loom::ops {
namespace {

Tensor Filled(Shape shape, uint64_t seed) {
  std::vector<float> v(shape.numel());
  for (size_t i = 0; i < v.size(); ++i) v[i] = NormalAt(seed, i);
  Tensor t = *Tensor::Empty(shape, DType::kF32, CpuDevice());
  EXPECT_TRUE(t.CopyFromFloats(v).ok());
  return t;
}

bool Same(const Tensor& a, const Tensor& b) {
  std::vector<float> x = *a.ToFloatVector(), y = *b.ToFloatVector();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * 4) == 0;
}

TEST(LinearSplitTest, InputThenWeightEqualsFusedBitwise) {
  const int64_t n = 37, ic = 19, oc = 23;
  for (bool bias : {false, true}) {
    Tensor dout = Filled(Shape{n, oc}, 1), inp = Filled(Shape{n, ic}, 2);
    Tensor w = Filled(Shape{oc, ic}, 3);
    // Gradients start non-zero: both halves must accumulate like the fused op.
    Tensor dw_fused = Filled(Shape{oc, ic}, 4), dw_split = Filled(Shape{oc, ic}, 4);
    Tensor db_fused = Filled(Shape{oc}, 5), db_split = Filled(Shape{oc}, 5);
    Tensor dx_fused = *Tensor::Empty(Shape{n, ic}, DType::kF32, CpuDevice());
    Tensor dx_split = *Tensor::Empty(Shape{n, ic}, DType::kF32, CpuDevice());
    ASSERT_TRUE(LinearBackward(dout, inp, w, &dx_fused, dw_fused, bias ? &db_fused : nullptr).ok());
    ASSERT_TRUE(LinearBackwardInput(dout, w, dx_split).ok());
    ASSERT_TRUE(LinearBackwardWeight(dout, inp, w, dw_split, bias ? &db_split : nullptr).ok());
    EXPECT_TRUE(Same(dx_fused, dx_split)) << "bias " << bias;
    EXPECT_TRUE(Same(dw_fused, dw_split)) << "bias " << bias;
    EXPECT_TRUE(Same(db_fused, db_split)) << "bias " << bias;
  }
}

TEST(LinearSplitTest, InputHalfChecksShapes) {
  Tensor dout = Filled(Shape{4, 3}, 1), w = Filled(Shape{3, 5}, 2);
  Tensor bad = *Tensor::Empty(Shape{4, 4}, DType::kF32, CpuDevice());
  EXPECT_FALSE(LinearBackwardInput(dout, w, bad).ok());
}

}  // namespace
}  // namespace loom::ops
