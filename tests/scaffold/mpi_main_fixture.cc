// Not a test of loom: the multi-rank main (tests/mpi_test_main.cc) run on purpose into a
// failure on one rank (MPI_MAIN_FIXTURE=fail_rank1) or a hang (MPI_MAIN_FIXTURE=hang) by
// mpi_main_test.sh, which checks what the main makes of them. Without the variable it passes.
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "parallel/world.h"

namespace loom {
namespace {

std::string Mode() {
  const char* m = std::getenv("MPI_MAIN_FIXTURE");
  return m == nullptr ? "" : m;
}

TEST(MpiMainFixture, FailsOnRankOneWhenAsked) {
  auto world = World::Get();
  ASSERT_TRUE(world.ok());
  if (Mode() == "fail_rank1") {
    EXPECT_NE((*world)->rank(), 1) << "planted failure on rank 1";
  }
}

TEST(MpiMainFixture, HangsWhenAsked) {
  if (Mode() == "hang") std::this_thread::sleep_for(std::chrono::seconds(60));
}

}  // namespace
}  // namespace loom
