// The scaling sweep's pure parts (plan/scaling.h): each point's overrides under weak and
// strong scaling, a run's metrics.jsonl reduced to one row (warm-up steps left out), efficiency
// against the first point, and the CSV / JSON / SVG shapes.
#include "plan/scaling.h"

#include <cmath>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
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
  const testing::ScopedTempDir tmp("scaling");
  const std::string dir = tmp.path();
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

// Round ticks: 0, then multiples of a step of 1, 2 or 5 times a power of ten, the last the first
// at or above the maximum; at most 6 intervals, and the finest step that allows it.
TEST(ScalingTest, AxisTicksAreRound) {
  EXPECT_EQ(NiceTicks(137), (std::vector<double>{0, 50, 100, 150}));
  EXPECT_EQ(NiceTicks(100), (std::vector<double>{0, 20, 40, 60, 80, 100}));
  EXPECT_EQ(NiceTicks(1.05), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2}));
  EXPECT_EQ(NiceTicks(2.4e5), (std::vector<double>{0, 50000, 100000, 150000, 200000, 250000}));
  EXPECT_EQ(NiceTicks(0.003),
            (std::vector<double>{0, 0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003}));
  EXPECT_EQ(NiceTicks(7, 3), (std::vector<double>{0, 5, 10}));
  EXPECT_EQ(NiceTicks(0), (std::vector<double>{0, 1}));
  for (double max = 0.0137; max < 2e7; max *= 1.37) {
    const std::vector<double> t = NiceTicks(max);
    ASSERT_GE(t.size(), 2u) << max;
    ASSERT_LE(t.size(), 7u) << max;
    const double step = t[1];
    const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    EXPECT_TRUE(std::fabs(mantissa - 1) < 1e-9 || std::fabs(mantissa - 2) < 1e-9 ||
                std::fabs(mantissa - 5) < 1e-9)
        << "step " << step << " for " << max;
    for (size_t k = 0; k < t.size(); ++k) EXPECT_NEAR(t[k], k * step, 1e-9 * step) << max;
    EXPECT_GE(t.back(), max);
    EXPECT_LT(t[t.size() - 2], max) << "a tick more than needed for " << max;
    // The next finer step would need more than 6 intervals.
    const double finer = mantissa == 1 ? step / 2 : mantissa == 2 ? step / 2 : step * 2 / 5;
    EXPECT_GT(std::ceil(max / finer - 1e-9), 6) << "step " << step << " is coarser than needed";
  }
}

// The plot: a marker on every measured point, both panels' titles and legends, and every text
// inside its own panel (the old right-hand title ran off the picture).
TEST(ScalingTest, SvgHasMarkersRoundTicksAndTextThatFits) {
  std::vector<ScalingPoint> points(4);
  const double tokens[] = {1000, 1900, 3500, 5200};
  for (int i = 0; i < 4; ++i) {
    points[i].ranks = 1 << i;
    points[i].dp = 1 << i;
    points[i].tokens_per_s = tokens[i];
  }
  FinishScaling(1000, &points);
  const std::string svg = ScalingSvg(points, ScalingMode::kWeak);
  size_t circles = 0;
  for (size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1)) {
    ++circles;
  }
  EXPECT_EQ(circles, 2 * points.size() + 2) << "a marker per measured point, one per legend";
  // y ticks of the tokens/s panel: ideal 8000 at 8 ranks -> 0, 2k, ..., 10k (step 2k).
  for (const char* label : {">0<", ">2k<", ">4k<", ">6k<", ">8k<", ">10k<", ">120%<", ">60%<"}) {
    EXPECT_TRUE(absl::StrContains(svg, label)) << label;
  }
  const std::regex text(
      "<text x=\"([0-9.]+)\" y=\"([0-9.]+)\" text-anchor=\"(start|middle|end)\"([^>]*)>([^<]*)<");
  const std::regex size(" font-size=\"([0-9.]+)\"");
  int texts = 0;
  for (std::sregex_iterator it(svg.begin(), svg.end(), text), end; it != end; ++it, ++texts) {
    double x = 0;
    ASSERT_TRUE(absl::SimpleAtod((*it)[1].str(), &x));
    double font = kSvgFontSize;
    std::smatch m;
    const std::string extra = (*it)[4].str();
    if (std::regex_search(extra, m, size)) {
      ASSERT_TRUE(absl::SimpleAtod(m[1].str(), &font));
    }
    const std::string s = (*it)[5].str();
    const double w = SvgTextWidth(s, font) * (extra.find("bold") != std::string::npos ? 1.1 : 1);
    const std::string anchor = (*it)[3].str();
    const double left = anchor == "start" ? x : anchor == "middle" ? x - w / 2 : x - w;
    const double panel = std::floor(x / 400);
    EXPECT_GE(left, panel * 400) << "'" << s << "' starts left of its panel";
    EXPECT_LE(left + w, panel * 400 + 400) << "'" << s << "' runs past its panel";
  }
  EXPECT_GT(texts, 20);
  EXPECT_TRUE(absl::StrContains(svg, ">scaling efficiency<"));
  EXPECT_TRUE(absl::StrContains(svg, ">tokens/s, weak scaling<"));
}

}  // namespace
}  // namespace loom
