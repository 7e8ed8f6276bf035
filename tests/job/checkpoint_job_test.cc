// The data position in layout-free terms (job/checkpoint_job.h): a rank's (epoch, index)
// becomes samples of the global order consumed and back, for another data-parallel size only
// when that divides exactly (refused naming the numbers otherwise).
#include "job/checkpoint_job.h"

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(CheckpointJobTest, DataPositionCarriesOverToAnotherDataParallelSize) {
  const CheckpointDataPosition p = DataPositionOf(DataLoaderState{2, 12}, 4);
  EXPECT_EQ(p.epoch(), 2);
  EXPECT_EQ(p.samples_consumed(), 48);
  for (int dp : {1, 2, 3, 4, 6, 8}) {
    auto s = DataStateFor(p, dp, "ck/step_00000007");
    ASSERT_TRUE(s.ok()) << dp << ": " << s.status();
    EXPECT_EQ(s->epoch, 2);
    EXPECT_EQ(s->index * dp, 48);
  }
  auto bad = DataStateFor(p, 5, "ck/step_00000007");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("ck/step_00000007"), std::string::npos);
  EXPECT_NE(std::string(bad.status().message()).find("48 samples of epoch 2"), std::string::npos)
      << bad.status();
  EXPECT_NE(std::string(bad.status().message()).find("over 5 data-parallel ranks"),
            std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace loom
