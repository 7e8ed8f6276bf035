// The rank -> GPU choice (runtime/cuda_device_choice.h), without a GPU.
#include "runtime/cuda_device_choice.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(CudaDeviceChoice, EachRankOfANodeTakesItsOwnDevice) {
  for (int r = 0; r < 8; ++r) {
    auto d = ChooseCudaDevice({r, 8}, 8);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, r);
  }
}

// srun --gpus-per-task=1, --gpu-bind, per-rank CUDA_VISIBLE_DEVICES: every rank sees one GPU,
// which is its own, whatever its local rank.
TEST(CudaDeviceChoice, OneVisibleDevicePerRankIsDeviceZero) {
  for (int r = 0; r < 8; ++r) {
    auto d = ChooseCudaDevice({r, 8}, 1);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, 0) << "local rank " << r;
  }
  EXPECT_EQ(*ChooseCudaDevice({0, 1}, 1), 0);
}

// A rank seeing a subset of k devices (srun --gpus-per-task=2) takes local rank mod k.
TEST(CudaDeviceChoice, SubsetsWrapByLocalRank) {
  EXPECT_EQ(*ChooseCudaDevice({5, 8}, 2), 1);
  EXPECT_EQ(*ChooseCudaDevice({4, 8}, 2), 0);
  EXPECT_EQ(*ChooseCudaDevice({1, 2}, 8), 1);  // more devices than ranks: its own index
}

TEST(CudaDeviceChoice, NoDeviceOrNoPlaceIsAClearError) {
  auto none = ChooseCudaDevice({3, 8}, 0, "no CUDA device is visible");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(none.status().message().find("local rank 3 of 8 sees no CUDA device: no CUDA"),
            std::string::npos)
      << none.status();
  for (LocalPlacement bad : {LocalPlacement{8, 8}, LocalPlacement{-1, 8}, LocalPlacement{0, 0}}) {
    auto d = ChooseCudaDevice(bad, 8);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  }
}

TEST(CudaDeviceChoice, DescribeNamesRankVisibilityAndDevice) {
  EXPECT_EQ(DescribeCudaChoice({3, 8}, 1, 0), "local rank 3 of 8, 1 device visible: cuda:0");
}

TEST(CudaDeviceChoice, PlacementFromTheLaunchersEnvironment) {
  const char* vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK",
                        "OMPI_COMM_WORLD_LOCAL_SIZE",
                        "SLURM_LOCALID",
                        "SLURM_NTASKS_PER_NODE",
                        "SLURM_TASKS_PER_NODE",
                        "MPI_LOCALRANKID",
                        "MPI_LOCALNRANKS",
                        "LOCAL_RANK",
                        "LOCAL_WORLD_SIZE"};
  for (const char* v : vars) unsetenv(v);
  LocalPlacement p = LocalPlacementFromEnv();
  EXPECT_EQ(p.local_rank, 0);
  EXPECT_EQ(p.local_size, 1);
  setenv("SLURM_LOCALID", "2", 1);
  setenv("SLURM_TASKS_PER_NODE", "4(x2)", 1);
  p = LocalPlacementFromEnv();
  EXPECT_EQ(p.local_rank, 2);
  EXPECT_EQ(p.local_size, 4);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);  // Open MPI's wins
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3", 1);
  p = LocalPlacementFromEnv();
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.local_size, 3);
  for (const char* v : vars) unsetenv(v);
}

}  // namespace
}  // namespace loom
