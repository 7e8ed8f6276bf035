// More Tensor behaviour: views share storage and keep it alive, copies do not, conversions per
// dtype, and the error messages of the shape / dtype / device checks.
#include <gtest/gtest.h>

#include "runtime/tensor.h"

namespace loom {
namespace {

Tensor Iota(int64_t n, const Shape& shape) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);
  return Tensor::FromVector(v, shape);
}

TEST(TensorViewsTest, SliceAndFlatViewShareStorage) {
  Tensor t = Iota(24, Shape{4, 2, 3});
  Tensor rows = t.Slice(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(rows.data_as<float>()[0], 6.0f);
  Tensor flat = t.FlatView(5, 4);
  EXPECT_EQ(flat.shape(), (Shape{4}));
  EXPECT_EQ(flat.data_as<float>()[0], 5.0f);
  flat.data_as<float>()[0] = -1.0f;
  EXPECT_EQ(t.data_as<float>()[5], -1.0f);
  EXPECT_EQ(t.Slice(0, 0).numel(), 0);
}

TEST(TensorViewsTest, ViewsKeepStorageAlive) {
  Device* cpu = CpuDevice();
  size_t live_before = cpu->allocator().stats().live_bytes;
  Tensor view;
  {
    Tensor t = Iota(256, Shape{16, 16});
    view = t.Slice(15, 16);
  }
  EXPECT_GT(cpu->allocator().stats().live_bytes, live_before);
  EXPECT_EQ(view.data_as<float>()[15], 255.0f);
  view = Tensor();
  EXPECT_EQ(cpu->allocator().stats().live_bytes, live_before);
}

TEST(TensorViewsTest, ToMakesAnIndependentCopy) {
  Tensor t = Iota(6, Shape{2, 3});
  auto copy = t.To(CpuDevice());
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_NE(copy->data(), t.data());
  t.data_as<float>()[0] = 100.0f;
  EXPECT_EQ(copy->data_as<float>()[0], 0.0f);
  EXPECT_EQ(copy->shape(), t.shape());
}

TEST(TensorViewsTest, CopyFromChecksSizeAndDType) {
  Tensor a = Iota(6, Shape{2, 3});
  Tensor b = *Tensor::Zeros(Shape{3, 2}, DType::kF32, CpuDevice());
  ASSERT_TRUE(b.CopyFrom(a).ok());  // same elements, any shape
  EXPECT_EQ(b.data_as<float>()[5], 5.0f);
  Tensor c = *Tensor::Zeros(Shape{5}, DType::kF32, CpuDevice());
  absl::Status st = c.CopyFrom(a);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("f32[2, 3]"), absl::string_view::npos) << st;
  Tensor d = *Tensor::Zeros(Shape{2, 3}, DType::kBF16, CpuDevice());
  EXPECT_FALSE(d.CopyFrom(a).ok());
}

TEST(TensorViewsTest, FloatConversionsPerDType) {
  const std::vector<float> values = {0.0f, 1.5f, -3.0f, 65504.0f};
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    Tensor x = *Tensor::Empty(Shape{4}, t, CpuDevice());
    ASSERT_TRUE(x.CopyFromFloats(values).ok());
    auto back = x.ToFloatVector();
    ASSERT_TRUE(back.ok());
    for (int i = 0; i < 3; ++i) EXPECT_EQ((*back)[i], values[i]) << DTypeName(t);
  }
  // 65504 is exact in f16, rounds to 65536 in bf16.
  Tensor h = *Tensor::Empty(Shape{4}, DType::kBF16, CpuDevice());
  ASSERT_TRUE(h.CopyFromFloats(values).ok());
  EXPECT_EQ((*h.ToFloatVector())[3], 65536.0f);

  Tensor ids = *Tensor::Empty(Shape{3}, DType::kI32, CpuDevice());
  ASSERT_TRUE(ids.CopyFromFloats({7.0f, -2.0f, 50257.0f}).ok());
  EXPECT_EQ(ids.data_as<int32_t>()[2], 50257);
  Tensor toks = *Tensor::Empty(Shape{2}, DType::kU16, CpuDevice());
  ASSERT_TRUE(toks.CopyFromFloats({65535.0f, 3.0f}).ok());
  EXPECT_EQ(toks.data_as<uint16_t>()[0], 65535);
  EXPECT_EQ((*toks.ToFloatVector())[0], 65535.0f);

  absl::Status st = ids.CopyFromFloats({1.0f});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("1 values into i32[3]"), absl::string_view::npos) << st;
}

TEST(TensorViewsTest, ChecksNameTheTensorAndTheMismatch) {
  Tensor a = Iota(6, Shape{2, 3});
  EXPECT_TRUE(CheckShape(a, Shape{2, 3}, "x").ok());
  absl::Status st = CheckShape(a, Shape{3, 2}, "attention.qkv");
  EXPECT_EQ(st.message(), "attention.qkv: expected shape [3, 2], got [2, 3]");
  st = CheckDType(a, DType::kBF16, "w");
  EXPECT_EQ(st.message(), "w: expected dtype bf16, got f32");
  EXPECT_TRUE(CheckSameDevice(a, a, "pair").ok());
  auto neg = Tensor::Empty(Shape{2, -1}, DType::kF32, CpuDevice());
  EXPECT_EQ(neg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(neg.status().message().find("[2, -1]"), absl::string_view::npos);
  auto bad = a.Reshape(Shape{4, 2});
  EXPECT_NE(bad.status().message().find("cannot reshape [2, 3] (6 elements) to [4, 2]"),
            absl::string_view::npos)
      << bad.status();
}

TEST(TensorViewsTest, ShapeIndexing) {
  Shape s{4, 64, 768};
  EXPECT_EQ(s.rank(), 3);
  EXPECT_EQ(s[-1], 768);
  EXPECT_EQ(s[0], 4);
  EXPECT_EQ(s.numel(), 4 * 64 * 768);
  EXPECT_EQ(Shape().numel(), 1);  // a scalar
  EXPECT_EQ(s.ToString(), "[4, 64, 768]");
}

}  // namespace
}  // namespace loom
