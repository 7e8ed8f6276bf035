// The metrics of a run against a hostile disk, operation by operation (runtime/fault_fs.h):
// for every file-system operation of opening a run dir's sinks and writing steps to them, each
// fault (ENOSPC, EIO, a short write) and a crash right after it. Documented behaviour
// (metrics/run_dir.h): a sink that cannot be opened ends the job before step 1 (an error
// naming the file); a failed write switches that sink off and training goes on; a reader never
// sees half a line of metrics.jsonl; nothing outside the run dir is touched.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "metrics/run_dir.h"
#include "runtime/fault_fs.h"
#include "runtime/files.h"
#include "runtime/fs.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using Fault = FaultInjectionFileSystem::Fault;

StepMetrics Step(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.loss = 2.5 + 1.0 / static_cast<double>(step);
  m.lr = 1e-3;
  m.grad_norm = 0.75;
  m.tokens_per_s = 1000;
  return m;
}

constexpr int kSteps = 4;

// Opens the sinks of `run_dir` (resuming after step 2 of an earlier part when `resume`) and
// logs steps 3..kSteps+2; the Open status.
absl::Status OpenAndLog(const std::string& run_dir, bool resume) {
  RunDirOptions o;
  if (resume) o.resume_step = 2;
  auto sinks = MetricsSinks::Open(run_dir, o);
  if (!sinks.ok()) return sinks.status();
  for (int s = 3; s < 3 + kSteps; ++s) (*sinks)->Log(Step(s));
  return absl::OkStatus();
}

void RunFaultAt(const std::string& root, int64_t n, Fault fault, bool resume, bool* fired) {
  const std::string context = absl::StrCat(resume ? "resumed" : "fresh", " run, fault ",
                                           static_cast<int>(fault), " at operation ", n);
  const std::string run = root + "/run";
  ASSERT_TRUE(MakeDirs(root).ok());
  if (resume) {
    // Steps 1 and 2 of the earlier part, and a step 3 it wrote after its last checkpoint.
    std::string old;
    for (int s = 1; s <= 3; ++s) absl::StrAppend(&old, FormatJsonLine(Step(s)), "\n");
    ASSERT_TRUE(MakeDirs(run).ok());
    ASSERT_TRUE(AtomicWriteFile(run + "/metrics.jsonl", old).ok());
  }
  FaultInjectionFileSystem fault_fs;
  absl::Status opened;
  {
    ScopedFileSystemForTesting use(&fault_fs);
    fault_fs.FailAt(n, fault);
    opened = OpenAndLog(run, resume);
  }
  *fired = fault_fs.fired();
  const std::string log = absl::StrJoin(fault_fs.log(), "\n");
  for (const std::string& p : fault_fs.touched()) {
    EXPECT_TRUE(absl::StartsWith(p, run)) << context << ": touched " << p << "\n" << log;
  }
  auto text = ReadFile(run + "/metrics.jsonl");
  if (!text.ok()) {
    // Only when the file could not be made: then the sinks did not open (the job ends).
    EXPECT_FALSE(opened.ok()) << context << ": no metrics.jsonl, yet Open succeeded\n" << log;
    return;
  }
  EXPECT_TRUE(text->empty() || text->back() == '\n') << context << ": half a line:\n" << *text;
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  int64_t expect = resume ? 1 : 3;  // a resumed run keeps steps 1 and 2 of the earlier part
  for (const std::string& line : lines) {
    EXPECT_TRUE(absl::StartsWith(line, absl::StrCat("{\"step\":", expect, ",")))
        << context << ": " << line;
    ++expect;
  }
  if (opened.ok() && !*fired) {
    EXPECT_EQ(lines.size(), static_cast<size_t>(resume ? 2 + kSteps : kSteps));
  }
}

TEST(MetricsFaultsTest, EveryOperationFailingLeavesWholeLines) {
  const testing::ScopedTempDir tmp("metrics_faults");
  const std::string root = tmp.path();
  const std::pair<Fault, const char*> faults[] = {{Fault::kNoSpace, "ENOSPC"},
                                                  {Fault::kIoError, "EIO"},
                                                  {Fault::kShortWrite, "short write"},
                                                  {Fault::kCrash, "crash"}};
  for (bool resume : {false, true}) {
    for (const auto& [fault, name] : faults) {
      int64_t swept = 0;
      for (int64_t n = 1;; ++n) {
        bool fired = false;
        RunFaultAt(absl::StrCat(root, "/", resume, "_", name, "_", n), n, fault, resume, &fired);
        if (HasFatalFailure() || !fired) break;
        swept = n;
      }
      EXPECT_GT(swept, kSteps) << name << ": fewer operations than steps";
    }
  }
}

}  // namespace
}  // namespace loom
