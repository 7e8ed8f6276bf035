#include "runtime/tensor.h"

#include <gtest/gtest.h>

namespace loom {
namespace {

TEST(TensorTest, EmptyZerosAndViews) {
  auto t = Tensor::Zeros(Shape{4, 3}, DType::kF32, CpuDevice());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->numel(), 12);
  EXPECT_EQ(t->nbytes(), 48u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(t->data_as<float>()[i], 0.0f);
  Tensor rows = t->Slice(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 3}));
  EXPECT_EQ(rows.data_as<float>(), t->data_as<float>() + 3);
  auto r = t->Reshape(Shape{2, 6});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(t->Reshape(Shape{5}).ok());
  EXPECT_EQ(t->DebugString(), "f32[4, 3] on cpu");
}

TEST(TensorTest, FloatRoundTripThroughBf16) {
  auto t = Tensor::Empty(Shape{3}, DType::kBF16, CpuDevice());
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->CopyFromFloats({1.0f, -2.5f, 0.15625f}).ok());
  auto v = t->ToFloatVector();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ((*v)[0], 1.0f);
  EXPECT_EQ((*v)[1], -2.5f);
  EXPECT_EQ((*v)[2], 0.15625f);
}

TEST(AllocatorTest, CachesAndCountsBytes) {
  Device* cpu = CpuDevice();
  cpu->allocator().EmptyCache();
  cpu->allocator().ResetPeak();
  size_t base_live = cpu->allocator().stats().live_bytes;
  void* p;
  {
    auto t = Tensor::Empty(Shape{1000}, DType::kF32, cpu);
    ASSERT_TRUE(t.ok());
    p = t->data();
    EXPECT_GE(cpu->allocator().stats().live_bytes, base_live + 4000);
  }
  EXPECT_EQ(cpu->allocator().stats().live_bytes, base_live);
  EXPECT_GE(cpu->allocator().stats().peak_bytes, base_live + 4000);
  size_t allocs = cpu->allocator().stats().num_device_allocs;
  auto t2 = Tensor::Empty(Shape{1000}, DType::kF32, cpu);
  ASSERT_TRUE(t2.ok());
  EXPECT_EQ(t2->data(), p);  // reused from the cache
  EXPECT_EQ(cpu->allocator().stats().num_device_allocs, allocs);
}

TEST(DeviceTest, CudaUnavailableSaysWhy) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto d = CudaDevice(0);
  EXPECT_FALSE(d.ok());
  EXPECT_FALSE(d.status().message().empty());
}

}  // namespace
}  // namespace loom
