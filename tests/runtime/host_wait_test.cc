// WaitForDevice (runtime/host_wait.h): returns when the work is done, ends a wait that outlasts
// the policy's deadline with DeadlineExceeded naming the work and the step, lets an extra check
// end it earlier, and calls the long-wait hook (the roll call) while it waits.
#include "runtime/host_wait.h"

#include <atomic>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

class HostWaitTest : public ::testing::Test {
 protected:
  void TearDown() override { SetHostWaitPolicy(HostWaitPolicy{}); }
};

TEST_F(HostWaitTest, ReturnsOnceTheWorkIsDone) {
  int polls = 0;
  absl::Status s = WaitForDevice([&]() -> absl::StatusOr<bool> { return ++polls >= 5; }, "copy");
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(polls, 5);
}

TEST_F(HostWaitTest, AStalledWaitEndsAtTheDeadlineNamingWorkAndStep) {
  std::atomic<int> reports{0};
  SetHostWaitPolicy(HostWaitPolicy{[] { return absl::Milliseconds(300); },
                                   [] { return int64_t{7}; },
                                   [&](const std::string& what) {
                                     EXPECT_EQ(what, "copy of 4 bytes from cuda:0 to the host");
                                     ++reports;
                                   }});
  const absl::Time start = absl::Now();
  absl::Status s = WaitForDevice([]() -> absl::StatusOr<bool> { return false; },
                                 "copy of 4 bytes from cuda:0 to the host");
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_NE(s.message().find("copy of 4 bytes from cuda:0 to the host did not complete within "
                             "300ms at step 7"),
            std::string::npos)
      << s;
  EXPECT_GT(reports.load(), 0) << "the roll-call hook was never called";
}

TEST_F(HostWaitTest, AnErrorOfTheWorkOrOfACheckEndsTheWait) {
  absl::Status s = WaitForDevice(
      []() -> absl::StatusOr<bool> { return absl::InternalError("illegal address"); }, "copy");
  EXPECT_EQ(s.message(), "illegal address");
  static bool fail = false;
  AddHostWaitCheck([]() -> absl::Status {
    return fail ? absl::DeadlineExceededError("all_reduce on dp [0,1] stalled") : absl::OkStatus();
  });
  fail = true;
  s = WaitForDevice([]() -> absl::StatusOr<bool> { return false; }, "copy");
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(), "all_reduce on dp [0,1] stalled");
  fail = false;
}

// A collective issued before the wait began passes its deadline first: the wait must name it,
// however rarely its polls reach the checks (every 64th poll; here a poll takes 20 ms, so only
// the first would). The cause of gpu_path_stall's rare failure under load, where the wait named
// itself ("a copy of 260 bytes to the host ... did not complete") instead of the all-reduce.
TEST_F(HostWaitTest, ACollectiveOlderThanTheWaitIsNamedAtTheDeadlineHoweverSlowThePolls) {
  SetHostWaitPolicy(HostWaitPolicy{[] { return absl::Milliseconds(300); }, nullptr, nullptr});
  static std::atomic<bool> armed{false};
  static absl::Time collective_deadline;
  collective_deadline = absl::Now() + absl::Milliseconds(250);  // issued 50 ms before the wait
  armed = true;
  AddHostWaitCheck([]() -> absl::Status {
    if (armed.load() && absl::Now() > collective_deadline) {
      return absl::DeadlineExceededError("all_reduce(avg) on dp [0,1,2] did not complete");
    }
    return absl::OkStatus();
  });
  absl::Status s = WaitForDevice(
      []() -> absl::StatusOr<bool> {
        absl::SleepFor(absl::Milliseconds(20));
        return false;
      },
      "a copy of 260 bytes to the host");
  armed = false;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(), "all_reduce(avg) on dp [0,1,2] did not complete");
}

}  // namespace
}  // namespace loom
