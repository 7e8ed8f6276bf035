// The scaling sweep's pure parts (plan/scaling.h): each point's overrides under weak and
// strong scaling, a run's metrics.jsonl reduced to one row (warm-up steps left out), efficiency
// against the first point, and the CSV / JSON / SVG shapes.
#include "plan/scaling.h"

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "runtime/files.h"
#include "tests/train/job_testing.h"

namespace loom {
namespace {

JobConfig Job() {
  JobConfig c;
  c.mutable_parallel()->set_global_batch_size(8);
  return c;
}

TEST(ScalingTest, WeakScalingGrowsTheBatchStrongKeepsIt) {
  auto weak = ScalingOverrides(Job(), ScalingMode::kWeak, 1, 4, 2);
  ASSERT_TRUE(weak.ok()) << weak.status();
  EXPECT_EQ(*weak, (std::vector<std::string>{"parallel.tp=2", "parallel.dp=2",
                                             "parallel.global_batch_size=32",
                                             "parallel.sequence_parallel=true"}));
  auto strong = ScalingOverrides(Job(), ScalingMode::kStrong, 1, 4, 1);
  ASSERT_TRUE(strong.ok()) << strong.status();
  EXPECT_EQ((*strong)[1], "parallel.dp=4");
  EXPECT_EQ((*strong)[2], "parallel.global_batch_size=8");
  auto first = ScalingOverrides(Job(), ScalingMode::kWeak, 2, 2, 4);  // tp capped at the ranks
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)[0], "parallel.tp=2");
  EXPECT_EQ((*first)[2], "parallel.global_batch_size=8");
  auto bad = ScalingOverrides(Job(), ScalingMode::kStrong, 1, 6, 4);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "--tp 4")) << bad.status();
}

TEST(ScalingTest, MetricsAreAveragedAfterTheWarmupAndEfficiencyIsPerRank) {
  const std::string dir = testing::FreshTempDir("scaling");
  ASSERT_TRUE(AtomicWriteFile(dir + "/metrics.jsonl",
                              "{\"step\":1,\"loss\":5,\"tokens_per_s\":10,\"peak_bytes\":50}\n"
                              "{\"step\":2,\"loss\":5,\"tokens_per_s\":300,\"mfu\":0.1,"
                              "\"comm_share\":0.2,\"peak_bytes\":70}\n"
                              "{\"step\":3,\"loss\":5,\"tokens_per_s\":100,\"mfu\":0.3,"
                              "\"comm_share\":0.4,\"peak_bytes\":60}\n")
                  .ok());
  ScalingPoint two;
  two.ranks = 2;
  ASSERT_TRUE(ReadRunMetrics(dir, 1, &two).ok());
  EXPECT_DOUBLE_EQ(two.tokens_per_s, 200);
  EXPECT_DOUBLE_EQ(*two.mfu, 0.2);
  EXPECT_DOUBLE_EQ(two.comm_share, 0.3);
  EXPECT_EQ(two.peak_bytes, 70);
  ScalingPoint one;
  one.tokens_per_s = 125;
  std::vector<ScalingPoint> points = {one, two};
  FinishScaling(1000, &points);
  EXPECT_DOUBLE_EQ(points[0].efficiency, 1);
  EXPECT_DOUBLE_EQ(points[1].efficiency, 0.8);  // 100 per rank against 125
  EXPECT_DOUBLE_EQ(points[1].flops_per_rank, 100 * 1000);

  const std::vector<std::string> csv = absl::StrSplit(ScalingCsv(points), '\n', absl::SkipEmpty());
  ASSERT_EQ(csv.size(), 3u);
  EXPECT_TRUE(absl::StartsWith(csv[2], "2,1,1,1,0,200,100,0.8,100000,0.2,0.3,0,70")) << csv[2];
  EXPECT_TRUE(absl::StrContains(ScalingJson(points, ScalingMode::kStrong),
                                "\"mode\":\"strong\",\"points\":[{\"ranks\":1,"));
  const std::string svg = ScalingSvg(points, ScalingMode::kStrong);
  EXPECT_TRUE(absl::StartsWith(svg, "<svg ")) << svg;
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    ++polylines;
  }
  EXPECT_EQ(polylines, 4u) << "measured and ideal, tokens/s and efficiency";

  ScalingPoint missing;
  absl::Status s = ReadRunMetrics(dir + "/nowhere", 0, &missing);
  EXPECT_TRUE(absl::StrContains(s.message(), "nowhere/metrics.jsonl")) << s;
}

}  // namespace
}  // namespace loom
