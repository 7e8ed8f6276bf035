// main() of every GPU test binary (loom_add_test(... GPU)): without a CUDA device that answers
// (or in a build without CUDA) it prints why and exits 77, which the test registration maps to
// ctest's "Skipped", so that "N tests passed" counts only binaries that ran. With a device it
// runs the tests; if every one of them skipped itself, it exits 77 as well.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "runtime/device.h"

namespace {
constexpr int kSkipped = 77;  // SKIP_RETURN_CODE in cmake/LoomTesting.cmake
}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // LOOM_GPU_TESTS_ON_TEST_DEVICE=1: run anyway, for the tests that can run their cases on the
  // test device (a check of their harness without a GPU; pick them with --gtest_filter).
  const char* on_test_device = std::getenv("LOOM_GPU_TESTS_ON_TEST_DEVICE");
  const bool anyway = on_test_device != nullptr && std::string(on_test_device) == "1";
  if (!GTEST_FLAG_GET(list_tests) && !anyway && loom::CudaDeviceCount() == 0) {
    const std::string reason = loom::CudaUnavailableReason();
    std::printf("SKIPPED: %s; none of this binary's %d tests ran\n",
                reason.empty() ? "no CUDA device answers" : reason.c_str(),
                ::testing::UnitTest::GetInstance()->total_test_count());
    return kSkipped;
  }
  const int rc = RUN_ALL_TESTS();
  const ::testing::UnitTest& u = *::testing::UnitTest::GetInstance();
  if (rc == 0 && u.test_to_run_count() > 0 && u.skipped_test_count() == u.test_to_run_count()) {
    std::printf("SKIPPED: all %d tests skipped themselves\n", u.skipped_test_count());
    return kSkipped;
  }
  return rc;
}
