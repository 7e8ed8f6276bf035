// Metrics: the console line, JSONL numbers that round-trip float32 exactly, and the JSONL file
// across a resume.
#include "metrics/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "absl/strings/str_split.h"
#include "runtime/files.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using ::testing::ElementsAre;

StepMetrics Sample(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.loss = 3.123456f;
  m.lr = 3e-4f;
  m.grad_norm = 1.23f;
  m.tokens_per_s = 12345;
  m.mfu = 0.456;
  m.peak_bytes = static_cast<int64_t>(1.2 * (1 << 30));
  return m;
}

TEST(MetricsFormatTest, ConsoleLine) {
  EXPECT_EQ(FormatConsoleLine(Sample(10), 100, 12, 108),
            "step  10/100 | loss 3.123456 | lr 3.00e-04 | norm 1.23 | 12.3k tok/s | "
            "mfu 45.6% | mem 1.2 GiB | 0:00:12 / eta 0:01:48");
  StepMetrics m = Sample(7);
  m.mfu.reset();  // unknown on CPU: left out
  m.val_loss = 2.5;
  m.peak_bytes = 300 << 20;
  EXPECT_EQ(FormatConsoleLine(m, 5000, 3725, -1),
            "step    7/5000 | loss 3.123456 | val 2.500000 | lr 3.00e-04 | norm 1.23 | "
            "12.3k tok/s | mem 300 MiB | 1:02:05");
}

TEST(MetricsFormatTest, Pieces) {
  EXPECT_EQ(FormatCount(987), "987");
  EXPECT_EQ(FormatCount(12345), "12.3k");
  EXPECT_EQ(FormatCount(4.5678e6), "4.57M");
  EXPECT_EQ(FormatCount(123.4e9), "123G");
  EXPECT_EQ(FormatBytes(0), "0 MiB");
  EXPECT_EQ(FormatBytes(int64_t{80} << 30), "80.0 GiB");
  EXPECT_EQ(FormatDuration(0), "0:00:00");
  EXPECT_EQ(FormatDuration(100 * 3600 + 61.4), "100:01:01");
  EXPECT_EQ(FormatDuration(-1), "-");
}

TEST(MetricsJsonTest, LineLayout) {
  StepMetrics m = Sample(10);
  m.loss = 2.5;
  m.lr = 0.25;
  m.grad_norm = 1;
  m.tokens_per_s = 1000;
  m.mfu = 0.5;
  m.peak_bytes = 123;
  EXPECT_EQ(FormatJsonLine(m),
            "{\"step\":10,\"loss\":2.5,\"lr\":0.25,\"grad_norm\":1,\"tokens_per_s\":1000,"
            "\"mfu\":0.5,\"peak_bytes\":123}");
  m.mfu.reset();
  m.val_loss = 2.25;
  m.loss = std::numeric_limits<double>::quiet_NaN();
  m.grad_norm = std::numeric_limits<double>::infinity();
  EXPECT_EQ(FormatJsonLine(m),
            "{\"step\":10,\"loss\":null,\"lr\":0.25,\"grad_norm\":null,\"tokens_per_s\":1000,"
            "\"peak_bytes\":123,\"val_loss\":2.25}");
  // A parallel run's communication share and skipped non-finite steps, before the peak.
  m.val_loss.reset();
  m.comm_share = 0.125;
  m.skipped_steps = 2;
  EXPECT_EQ(FormatJsonLine(m),
            "{\"step\":10,\"loss\":null,\"lr\":0.25,\"grad_norm\":null,\"tokens_per_s\":1000,"
            "\"comm_share\":0.125,\"skipped_steps\":2,\"peak_bytes\":123}");
}

TEST(MetricsJsonTest, Float32ValuesRoundTripBitForBit) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  int checked = 0, lost_with_8_digits = 0;
  while (checked < 20000) {
    const uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (!std::isfinite(f)) continue;
    const std::string s = JsonNumber(f);
    const float back = std::strtof(s.c_str(), nullptr);
    uint32_t back_bits;
    std::memcpy(&back_bits, &back, 4);
    ASSERT_EQ(back_bits, b) << s;
    char eight[32];
    std::snprintf(eight, sizeof(eight), "%.8g", f);
    lost_with_8_digits += std::strtof(eight, nullptr) != f;
    ++checked;
  }
  // The test can tell: with 8 digits some floats (about 1.5%) would not come back.
  EXPECT_GT(lost_with_8_digits, 100);
}

TEST(MetricsLoggerTest, WritesOneLinePerStepAndResumes) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp / "run";
  {
    auto logger = MetricsLogger::Create(dir);
    ASSERT_TRUE(logger.ok()) << logger.status();
    EXPECT_EQ((*logger)->path(), dir + "/metrics.jsonl");
    for (int step = 1; step <= 5; ++step) ASSERT_TRUE((*logger)->Log(Sample(step)).ok());
    // Flushed per line: readable while the logger is open.
    auto text = ReadFile(dir + "/metrics.jsonl");
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(std::count(text->begin(), text->end(), '\n'), 5);
  }
  // Crash leftovers: a line cut in half. Resume from the checkpoint at step 3.
  {
    std::FILE* f = std::fopen((dir + "/metrics.jsonl").c_str(), "a");
    std::fputs("{\"step\":6,\"loss\":3.1", f);
    std::fclose(f);
  }
  {
    auto logger = MetricsLogger::OpenForResume(dir, 3);
    ASSERT_TRUE(logger.ok()) << logger.status();
    ASSERT_TRUE((*logger)->Log(Sample(4)).ok());
  }
  auto text = ReadFile(dir + "/metrics.jsonl");
  ASSERT_TRUE(text.ok());
  std::vector<std::string> steps;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    steps.push_back(std::string(line.substr(0, line.find(','))));
  }
  EXPECT_THAT(steps, ElementsAre("{\"step\":1", "{\"step\":2", "{\"step\":3", "{\"step\":4"));

  // Create starts afresh.
  auto fresh = MetricsLogger::Create(dir);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(ReadFile(dir + "/metrics.jsonl")->size(), 0u);
  // Resuming where no file exists yet starts one.
  auto none = MetricsLogger::OpenForResume(tmp / "other", 10);
  ASSERT_TRUE(none.ok()) << none.status();
}

TEST(MetricsTensorBoardTest, Tags) {
  StepMetrics m = Sample(1);
  m.val_loss = 2.0;
  std::vector<std::string> tags;
  for (const auto& [tag, value] : TensorBoardScalars(m)) tags.push_back(tag);
  EXPECT_THAT(tags, ElementsAre("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s",
                                "train/mfu", "train/peak_memory_gib", "val/loss"));
  EXPECT_EQ(TensorBoardScalars(m)[0].second, 3.123456f);
  // Peak memory in GiB (2^30 bytes): 1.2 * 2^30 bytes is 1.2.
  EXPECT_FLOAT_EQ(TensorBoardScalars(m)[5].second, 1.2f);
}

}  // namespace
}  // namespace loom
