// The caching allocator's out-of-memory retry and EmptyCache go through the release gate
// (CachingAllocator::SetCacheReleaseGate) before returning cached blocks of a GPU-like device:
// while the gate says collectives are in flight nothing is freed (cudaFree would wait for
// them, forever when a peer has stalled), and the allocation fails naming why.
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/device.h"

namespace loom {
namespace {

// Reports itself as CUDA, holds at most `capacity` bytes, counts frees.
class BudgetDevice final : public Device {
 public:
  explicit BudgetDevice(size_t capacity) : capacity_(capacity) {}
  DeviceKind kind() const override { return DeviceKind::kCuda; }
  std::string Name() const override { return "budget"; }
  absl::StatusOr<void*> RawAllocate(size_t bytes) override {
    if (used_ + bytes > capacity_) return absl::ResourceExhaustedError("budget spent");
    used_ += bytes;
    sizes_.push_back(bytes);
    void* p = std::malloc(bytes);
    ptrs_.push_back(p);
    return p;
  }
  void RawFree(void* ptr) override {
    for (size_t i = 0; i < ptrs_.size(); ++i) {
      if (ptrs_[i] == ptr) used_ -= sizes_[i], ptrs_[i] = nullptr;
    }
    ++frees;
    std::free(ptr);
  }
  absl::Status CopyToHost(void*, const void*, size_t) override { return absl::OkStatus(); }
  absl::Status CopyFromHost(void*, const void*, size_t) override { return absl::OkStatus(); }
  absl::Status CopyWithin(void*, const void*, size_t) override { return absl::OkStatus(); }
  absl::Status Memset(void*, int, size_t) override { return absl::OkStatus(); }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  MemoryInfo GetMemoryInfo() const override { return {capacity_, capacity_ - used_}; }
  int frees = 0;

 private:
  size_t capacity_, used_ = 0;
  std::vector<size_t> sizes_;
  std::vector<void*> ptrs_;
};

class ReleaseGateTest : public ::testing::Test {
 protected:
  void TearDown() override { CachingAllocator::SetCacheReleaseGate(nullptr); }
};

TEST_F(ReleaseGateTest, OomRetryFreesTheCacheOnlyThroughTheGate) {
  BudgetDevice dev(4096);
  bool in_flight = true;
  int asked = 0;
  CachingAllocator::SetCacheReleaseGate([&]() -> absl::Status {
    ++asked;
    if (in_flight) return absl::DeadlineExceededError("all_reduce on dp [0,1] still in flight");
    return absl::OkStatus();
  });
  void* a = *dev.allocator().Allocate(3000);  // rounds to 3072
  dev.allocator().Free(a);                    // cached
  // The cached 3072 bytes cannot serve 3584, and 3584 more do not fit beside them: the device
  // must get the cached block back first.
  auto b = dev.allocator().Allocate(3584);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(dev.frees, 0) << "the cache was freed while a collective was in flight";
  EXPECT_NE(b.status().message().find("cannot be released: all_reduce on dp [0,1]"),
            std::string::npos)
      << b.status();
  dev.allocator().EmptyCache();  // gate closed: kept
  EXPECT_EQ(dev.frees, 0);
  EXPECT_EQ(dev.allocator().stats().reserved_bytes, 3072u);

  in_flight = false;
  b = dev.allocator().Allocate(3584);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(dev.frees, 1);
  dev.allocator().Free(*b);
  dev.allocator().EmptyCache();
  EXPECT_EQ(dev.frees, 2);
}

// What the gate waits for (a collective completing) may release its tensors, which frees
// blocks of this very allocator: the gate must run without the allocator's lock (it deadlocked).
TEST_F(ReleaseGateTest, TheGateMayFreeBlocksOfTheSameAllocator) {
  BudgetDevice dev(8192);
  void* held = *dev.allocator().Allocate(1024);  // an orphan a finished collective still holds
  dev.allocator().Free(*dev.allocator().Allocate(3000));
  void* filler = *dev.allocator().Allocate(3584);  // cache 3072 + live 1024 + 3584 of 8192
  CachingAllocator::SetCacheReleaseGate([&]() -> absl::Status {
    if (held != nullptr) dev.allocator().Free(held);
    held = nullptr;
    return absl::OkStatus();
  });
  auto b = dev.allocator().Allocate(3584);  // needs the cache back: the gate runs
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(held, nullptr);
  dev.allocator().Free(*b);
  dev.allocator().Free(filler);
  CachingAllocator::SetCacheReleaseGate(nullptr);
  dev.allocator().EmptyCache();
}

TEST_F(ReleaseGateTest, WithoutAGateTheRetryFreesAsBefore) {
  BudgetDevice dev(4096);
  dev.allocator().Free(*dev.allocator().Allocate(3000));
  auto b = dev.allocator().Allocate(3584);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(dev.frees, 1);
  auto c = dev.allocator().Allocate(4096);  // nothing cached, nothing left: a clean error
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  dev.allocator().Free(*b);
  dev.allocator().EmptyCache();  // before ~BudgetDevice: the allocator frees through it
}

}  // namespace
}  // namespace loom
