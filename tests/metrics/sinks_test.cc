// The metrics sinks against a hostile disk and a reused run dir: a write that fails part way
// leaves the file ending in a whole record (metrics.jsonl line or TFRecord), a failing sink is
// switched off while the others go on, a fresh run refuses a run dir holding an earlier run's
// metrics unless told to overwrite, and a resumed run continues metrics.jsonl without
// duplicated steps.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "metrics/append_file.h"
#include "metrics/run_dir.h"
#include "metrics/tensorboard.h"
#include "runtime/files.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

// A disk that fills up: after `g_budget` more bytes every write fails with ENOSPC; the write
// that crosses the limit writes what fits (as the kernel does).
int64_t g_budget = 0;
int g_failed_writes = 0;
ssize_t FillingDiskWrite(int fd, const void* data, size_t bytes) {
  if (g_budget <= 0) {
    ++g_failed_writes;
    errno = ENOSPC;
    return -1;
  }
  const size_t n = std::min<size_t>(bytes, static_cast<size_t>(g_budget));
  const ssize_t written = ::write(fd, data, n);
  if (written > 0) g_budget -= written;
  return written;
}

class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_budget = 0;
    g_failed_writes = 0;
  }
  void TearDown() override { SetAppendWriteFunctionForTesting(nullptr); }
  void DiskFullAfter(int64_t bytes) {
    g_budget = bytes;
    SetAppendWriteFunctionForTesting(FillingDiskWrite);
  }
};

StepMetrics Step(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.loss = 2.5 + 1.0 / static_cast<double>(step);
  m.lr = 1e-3;
  m.grad_norm = 0.75;
  m.tokens_per_s = 1000;
  m.peak_bytes = 1 << 20;
  return m;
}

// Every line of metrics.jsonl, checked to be one whole JSON object of this logger.
std::vector<std::string> WholeLines(const std::string& path) {
  auto text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return {};
  EXPECT_TRUE(text->empty() || text->back() == '\n') << "the file ends inside a line:\n" << *text;
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  for (const std::string& line : lines) {
    EXPECT_TRUE(absl::StartsWith(line, "{\"step\":") && absl::EndsWith(line, "}")) << line;
  }
  return lines;
}

TEST_F(FullDiskTest, AppendIsWholeOrNothing) {
  const testing::ScopedTempDir tmp;
  const std::string path = tmp / "records";
  auto file = AppendFile::Open(path, AppendFile::Mode::kTruncate);
  ASSERT_TRUE(file.ok()) << file.status();
  DiskFullAfter(25);
  ASSERT_TRUE((*file)->Append("0123456789\n").ok());
  ASSERT_TRUE((*file)->Append("0123456789\n").ok());
  absl::Status s = (*file)->Append("0123456789\n");  // 3 of its 11 bytes fit
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), path)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "No space left")) << s;
  EXPECT_EQ(*ReadFile(path), "0123456789\n0123456789\n");
  EXPECT_EQ((*file)->size(), 22);
  // Space again: the next record follows the last whole one.
  SetAppendWriteFunctionForTesting(nullptr);
  ASSERT_TRUE((*file)->Append("abc\n").ok());
  EXPECT_EQ(*ReadFile(path), "0123456789\n0123456789\nabc\n");
}

TEST_F(FullDiskTest, FailedSinkIsSwitchedOffOthersGoOn) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp / "run";
  auto sinks = MetricsSinks::Open(dir, RunDirOptions{});
  ASSERT_TRUE(sinks.ok()) << sinks.status();
  ASSERT_TRUE((*sinks)->jsonl_active());
  ASSERT_TRUE((*sinks)->tensorboard_active());
  for (int step = 1; step <= 3; ++step) (*sinks)->Log(Step(step));
  // The disk fills in the middle of step 4's writes (its JSON line fits, its event does not).
  const int64_t json_line = static_cast<int64_t>(FormatJsonLine(Step(4)).size()) + 1;
  DiskFullAfter(json_line + 10);
  (*sinks)->Log(Step(4));  // no failure surfaces
  EXPECT_TRUE((*sinks)->jsonl_active());
  EXPECT_FALSE((*sinks)->tensorboard_active());
  // Step 5's line does not fit: metrics.jsonl is switched off too, and after that nothing is
  // attempted (one failed write per sink, one warning each).
  for (int step = 5; step <= 10; ++step) (*sinks)->Log(Step(step));
  EXPECT_FALSE((*sinks)->jsonl_active());
  EXPECT_EQ(g_failed_writes, 2);
  SetAppendWriteFunctionForTesting(nullptr);

  std::vector<std::string> lines = WholeLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(absl::StartsWith(lines[3], "{\"step\":4,")) << lines[3];
  // The event file holds whole records only: steps 1-3 after the version record.
  std::vector<std::string> events;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (absl::StartsWith(e.path().filename().string(), "events.out.tfevents.")) {
      events.push_back(e.path().string());
    }
  }
  ASSERT_EQ(events.size(), 1u);
  auto read = ReadEventFile(events[0]);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 4u);
  EXPECT_EQ((*read)[3].step(), 3);
}

TEST(RunDirTest, FreshRunRefusesEarlierMetricsUnlessOverwriting) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp / "run";
  EXPECT_TRUE(ExistingMetricsFiles(dir).empty());
  EXPECT_EQ(RunDirInUseProblem(dir), "");
  {
    auto first = MetricsSinks::Open(dir, RunDirOptions{});
    ASSERT_TRUE(first.ok()) << first.status();
    for (int step = 1; step <= 3; ++step) (*first)->Log(Step(step));
  }
  ASSERT_EQ(ExistingMetricsFiles(dir).size(), 2u);  // metrics.jsonl and one event file
  const std::string problem = RunDirInUseProblem(dir);
  EXPECT_TRUE(absl::StrContains(problem, "logging.run_dir " + dir)) << problem;
  EXPECT_TRUE(absl::StrContains(problem, "logging.overwrite")) << problem;

  auto second = MetricsSinks::Open(dir, RunDirOptions{});
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::StrContains(second.status().message(), "already holds")) << second.status();
  EXPECT_EQ(WholeLines(dir + "/metrics.jsonl").size(), 3u) << "the refusal touched the old file";

  RunDirOptions overwrite;
  overwrite.overwrite = true;
  {
    auto third = MetricsSinks::Open(dir, overwrite);
    ASSERT_TRUE(third.ok()) << third.status();
    (*third)->Log(Step(1));
  }
  EXPECT_EQ(WholeLines(dir + "/metrics.jsonl").size(), 1u);
  EXPECT_EQ(ExistingMetricsFiles(dir).size(), 2u) << "the old event file was not deleted";
}

TEST(RunDirTest, ResumeContinuesWithoutDuplicatedSteps) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp / "run";
  RunDirOptions jsonl_only;
  jsonl_only.tensorboard = false;
  {
    auto first = MetricsSinks::Open(dir, jsonl_only);
    ASSERT_TRUE(first.ok()) << first.status();
    for (int step = 1; step <= 8; ++step) (*first)->Log(Step(step));
  }
  // The run resumes from its checkpoint at step 5: steps 6-8 are logged again.
  RunDirOptions resume = jsonl_only;
  resume.resume_step = 5;
  {
    auto resumed = MetricsSinks::Open(dir, resume);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    for (int step = 6; step <= 9; ++step) (*resumed)->Log(Step(step));
  }
  std::vector<std::string> lines = WholeLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 9u);
  for (int i = 0; i < 9; ++i) {
    EXPECT_TRUE(absl::StartsWith(lines[i], absl::StrCat("{\"step\":", i + 1, ","))) << lines[i];
  }
}

}  // namespace
}  // namespace loom
