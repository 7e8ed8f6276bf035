// The main of the multi-rank GoogleTest binaries: MPI is started through World before the tests
// run, and the exit code is the worst over the ranks, so a failure on any rank fails the run.
#include <mpi.h>

#include "gtest/gtest.h"
#include "parallel/world.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = loom::World::Get();
  if (!world.ok()) return 1;
  int rc = RUN_ALL_TESTS();
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
