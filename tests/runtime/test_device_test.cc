// The test device (runtime/test_device.h): memory the host reaches only by copies, work that
// runs later in stream order, events between streams, host waits that count and carry a
// deadline, the sticky error.
#include "runtime/test_device.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/host_wait.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace loom {
namespace {

Device* Dev() {
  auto d = TestDevice(0);
  EXPECT_TRUE(d.ok()) << d.status();
  return *d;
}

void Sleep(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST(TestDevice, IsADeviceApartFromTheHost) {
  Device* d = Dev();
  EXPECT_TRUE(d->is_test());
  EXPECT_FALSE(d->host_memory());
  EXPECT_GE(TestDeviceCount(), 2);  // several per host
  auto t = Tensor::Empty(Shape{4}, DType::kF32, d);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->on_host());
  // The host's view of the address is tagged: dereferencing it faults.
  EXPECT_NE(reinterpret_cast<uintptr_t>(t->data()) & kTestDeviceAddressTag, 0u);
}

TEST(TestDeviceDeathTest, HostAccessFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Device* d = Dev();
  auto t = Tensor::Empty(Shape{4}, DType::kF32, d);
  ASSERT_TRUE(t.ok());
  EXPECT_DEATH(
      {
        volatile float x = t->data_as<float>()[0];
        (void)x;
      },
      "");
}

TEST(TestDevice, CopiesRoundTripAndFreshMemoryIsPoisoned) {
  Device* d = Dev();
  auto t = Tensor::Empty(Shape{3}, DType::kF32, d);
  ASSERT_TRUE(t.ok());
  auto fresh = t->ToFloatVector();
  ASSERT_TRUE(fresh.ok());
  for (float v : *fresh) EXPECT_TRUE(std::isnan(v));  // nothing wrote it
  ASSERT_TRUE(t->CopyFromFloats({1, 2, 3}).ok());
  auto back = t->ToFloatVector();
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, (std::vector<float>{1, 2, 3}));
}

TEST(TestDevice, WorkRunsLaterInStreamOrder) {
  Device* d = Dev();
  auto t = Tensor::Zeros(Shape{1}, DType::kF32, d);
  ASSERT_TRUE(t.ok());
  Tensor v = *t;
  std::atomic<bool> ran{false};
  // A slow kernel, then a memset behind it: the host returns at once, the device keeps order.
  ASSERT_TRUE(EnqueueOnTestDevice(d, [v, &ran] {
                Sleep(100);
                v.data_as<float>()[0] = 5.0f;
                ran = true;
                return absl::OkStatus();
              }).ok());
  EXPECT_FALSE(ran.load());                     // asynchronous
  ASSERT_TRUE(d->Memset(v.data(), 0, 2).ok());  // zeroes the low bytes of 5.0f's bits: still 5
  const int64_t syncs = d->host_syncs();
  auto got = v.ToFloatVector();  // waits for both
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(ran.load());
  EXPECT_EQ((*got)[0], 5.0f);
  EXPECT_EQ(d->host_syncs(), syncs + 1);
}

// Copies to staging memory (a checkpoint snapshot): queued behind the work before them, the
// host does not wait for each, and one WaitForCopies (one counted host wait) covers them all;
// the bytes are counted.
TEST(TestDevice, CopiesToTheHostQueueAndOneWaitCoversThem) {
  Device* d = Dev();
  Tensor v = *Tensor::Zeros(Shape{2}, DType::kF32, d);
  ASSERT_TRUE(EnqueueOnTestDevice(d, [v] {
                Sleep(100);
                v.data_as<float>()[0] = 5.0f;
                v.data_as<float>()[1] = 6.0f;
                return absl::OkStatus();
              }).ok());
  auto staging = d->AllocateHostStaging(8);
  ASSERT_TRUE(staging.ok());
  float* host = static_cast<float*>(*staging);
  host[0] = host[1] = -1.0f;
  const int64_t syncs = d->host_syncs(), bytes = d->bytes_to_host();
  ASSERT_TRUE(d->CopyToHostAsync(host, v.data(), 4).ok());
  ASSERT_TRUE(d->CopyToHostAsync(host + 1, v.data_as<float>() + 1, 4).ok());
  EXPECT_EQ(host[0], -1.0f);  // not yet: the slow kernel runs first
  EXPECT_EQ(d->host_syncs(), syncs);
  ASSERT_TRUE(d->WaitForCopies("the test's copies").ok());
  EXPECT_EQ(host[0], 5.0f);
  EXPECT_EQ(host[1], 6.0f);
  EXPECT_EQ(d->host_syncs(), syncs + 1);
  EXPECT_EQ(d->bytes_to_host(), bytes + 8);
  d->FreeHostStaging(host);
}

// Timing events, as CUDA's: the time between the stream reaching two records (a sleep of at
// least 50 ms between them here), and an error before the stream has reached them.
TEST(TestDevice, EventsTimeTheirStream) {
  Device* d = Dev();
  auto begin = Event::Create(d), end = Event::Create(d);
  ASSERT_TRUE(begin.ok() && end.ok());
  const Stream ops = Stream::Default(d);
  std::atomic<bool> go{false};
  ASSERT_TRUE(EnqueueOnTestDevice(d, [&go] {
                while (!go.load()) Sleep(1);
                return absl::OkStatus();
              }).ok());
  ASSERT_TRUE((*begin)->Record(ops).ok());
  ASSERT_TRUE(EnqueueOnTestDevice(d, [] {
                Sleep(50);
                return absl::OkStatus();
              }).ok());
  ASSERT_TRUE((*end)->Record(ops).ok());
  EXPECT_FALSE((*end)->ElapsedMs(**begin).ok());  // not reached yet
  go = true;
  ASSERT_TRUE((*end)->Synchronize().ok());
  auto ms = (*end)->ElapsedMs(**begin);
  ASSERT_TRUE(ms.ok()) << ms.status();
  EXPECT_GE(*ms, 49.0f);
}

TEST(TestDevice, EventsOrderStreamsAndWithoutThemNothingDoes) {
  Device* d = Dev();
  auto side = Stream::Create(d);
  ASSERT_TRUE(side.ok());
  auto ev = Event::Create(d);
  ASSERT_TRUE(ev.ok());
  auto t = Tensor::Zeros(Shape{1}, DType::kF32, d);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(d->Synchronize().ok());
  Tensor v = *t;
  // The op stream writes slowly; the side stream reads after waiting for the event.
  ASSERT_TRUE(EnqueueOnTestDevice(d, [v] {
                Sleep(100);
                v.data_as<float>()[0] = 7.0f;
                return absl::OkStatus();
              }).ok());
  ASSERT_TRUE((*ev)->Record(Stream::Default(d)).ok());
  ASSERT_TRUE((*side)->Wait(**ev).ok());
  std::atomic<float> seen_ordered{-1}, seen_unordered{-1};
  auto* w = static_cast<test_device::StreamWorker*>((*side)->handle());
  ASSERT_TRUE(test_device::Enqueue(w, [v, &seen_ordered] {
                seen_ordered = v.data_as<float>()[0];
                return absl::OkStatus();
              }).ok());
  ASSERT_TRUE((*side)->Synchronize().ok());
  EXPECT_EQ(seen_ordered.load(), 7.0f);
  // Without the event a second stream runs ahead of the first.
  auto other = Stream::Create(d);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(EnqueueOnTestDevice(d, [v] {
                Sleep(100);
                v.data_as<float>()[0] = 9.0f;
                return absl::OkStatus();
              }).ok());
  auto* w2 = static_cast<test_device::StreamWorker*>((*other)->handle());
  ASSERT_TRUE(test_device::Enqueue(w2, [v, &seen_unordered] {
                seen_unordered = v.data_as<float>()[0];
                return absl::OkStatus();
              }).ok());
  ASSERT_TRUE((*other)->Synchronize().ok());
  EXPECT_EQ(seen_unordered.load(), 7.0f);  // the old value: no order without an event
  ASSERT_TRUE(d->Synchronize().ok());
}

TEST(TestDevice, HostWaitsCarryTheDeadline) {
  Device* d = Dev();
  HostWaitPolicy policy;
  policy.timeout = [] { return absl::Milliseconds(200); };
  SetHostWaitPolicy(policy);
  auto side = Stream::Create(d);
  ASSERT_TRUE(side.ok());
  auto* w = static_cast<test_device::StreamWorker*>((*side)->handle());
  ASSERT_TRUE(test_device::Enqueue(w, [] {
                Sleep(600);
                return absl::OkStatus();
              }).ok());
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = (*side)->Synchronize();
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(took, 0.5);
  EXPECT_NE(s.message().find("runtime.collective_timeout_s"), std::string::npos) << s;
  SetHostWaitPolicy(HostWaitPolicy{});
}

TEST(TestDevice, AFailedKernelIsStickyAsOnAGpu) {
  auto d = TestDevice(1);  // device 0 stays healthy for the other tests
  ASSERT_TRUE(d.ok());
  auto t = Tensor::Zeros(Shape{1}, DType::kF32, *d);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(EnqueueOnTestDevice(*d, [] { return absl::InternalError("kernel fault"); }).ok());
  std::atomic<bool> later_ran{false};
  ASSERT_TRUE(EnqueueOnTestDevice(*d, [&later_ran] {
                later_ran = true;
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ((*d)->Synchronize().code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(later_ran.load());         // work after the fault is skipped
  EXPECT_FALSE(t->ToFloatVector().ok());  // and every later wait reports it
}

TEST(TestDevice, VisibilityAndExclusiveProcessNeedTheirOwnProcess) {
  // LOOM_TEST_VISIBLE_DEVICES and LOOM_TEST_DEVICE_LOCK_DIR are read once per process: the
  // trainer tests (tests/launcher/gpu_path_test.sh) set them per rank.
  EXPECT_FALSE(TestDevice(TestDeviceCount()).ok());
  EXPECT_FALSE(TestDevice(-1).ok());
}

}  // namespace
}  // namespace loom
