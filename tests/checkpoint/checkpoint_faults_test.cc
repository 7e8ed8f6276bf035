// A checkpoint save against a hostile disk, operation by operation (runtime/fault_fs.h): for
// every file-system operation of a save, each fault (ENOSPC, EIO, a short write; a failed
// fsync or rename is the fault landing on that operation) and a crash right after it. After
// each:
// - Save returns an error (the trainer then ends the job, exit 1), or OK only when the step was
//   committed;
// - `latest` (or, without it, the newest complete step) names a checkpoint that verifies: the
//   new step, or the one before;
// - nothing outside the new step's directory was changed except `latest` (the step before is
//   byte for byte the same, no file outside checkpoint.dir was touched);
// - the next save (the job restarted, the disk healthy again) commits and verifies.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "parallel/world.h"
#include "runtime/fault_fs.h"
#include "runtime/files.h"
#include "runtime/fs.h"
#include "tests/checkpoint/checkpoint_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using Fault = FaultInjectionFileSystem::Fault;
using testing::MakeState;
using testing::SaveStep;
using testing::State;

// Every file under `root` with its contents.
std::map<std::string, std::string> Snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  auto names = PosixFs().ListDir(root);
  if (!names.ok()) return out;
  for (const std::string& n : *names) {
    const std::string p = absl::StrCat(root, "/", n);
    if (IsDir(PosixFs(), p)) {
      for (auto& [k, v] : Snapshot(p)) out[k] = v;
    } else {
      out[p] = *PosixFs().ReadFile(p);
    }
  }
  return out;
}

// The checkpoint `dir` resolves to, verified whole; its step, or -1 with a test failure.
int64_t VerifiedStep(const std::string& dir, const std::string& context) {
  auto step_dir = ResolveCheckpoint(dir);
  if (!step_dir.ok()) {
    ADD_FAILURE() << context << ": " << step_dir.status();
    return -1;
  }
  auto reader = CheckpointReader::Open(*step_dir);
  if (!reader.ok()) {
    ADD_FAILURE() << context << ": " << reader.status();
    return -1;
  }
  auto bytes = (*reader)->VerifyAll();
  if (!bytes.ok()) {
    ADD_FAILURE() << context << ": " << bytes.status();
    return -1;
  }
  return (*reader)->manifest().step();
}

// The number of counted operations of one whole save of step 2 over a step-1 checkpoint.
int64_t OpsOfOneSave(const std::string& root) {
  const std::string dir = root + "/ckpt";
  State s = MakeState(1);
  EXPECT_TRUE(SaveStep(dir, s, 1).ok());
  FaultInjectionFileSystem fault_fs;
  ScopedFileSystemForTesting use(&fault_fs);
  State s2 = MakeState(2);
  EXPECT_TRUE(SaveStep(dir, s2, 2).ok());
  return fault_fs.ops();
}

void RunFaultAt(const std::string& root, int64_t n, Fault fault, const std::string& name) {
  const std::string context = absl::StrCat(name, " at operation ", n);
  const std::string dir = root + "/ckpt";
  ASSERT_TRUE(MakeDirs(root).ok());
  ASSERT_TRUE(AtomicWriteFile(root + "/outside.txt", "not the checkpoint's").ok());
  State s1 = MakeState(1);
  ASSERT_TRUE(SaveStep(dir, s1, 1).ok());
  std::map<std::string, std::string> before = Snapshot(root);

  FaultInjectionFileSystem fault_fs;
  absl::StatusOr<std::optional<SaveStats>> saved;
  {
    ScopedFileSystemForTesting use(&fault_fs);
    fault_fs.FailAt(n, fault);
    State s2 = MakeState(2);
    saved = SaveStep(dir, s2, 2);
  }
  const std::string log = absl::StrJoin(fault_fs.log(), "\n");
  ASSERT_TRUE(fault_fs.fired()) << context << ": the save has fewer operations\n" << log;
  // A fault never passes silently: an error, unless the fault hit after the commit point and
  // the step still committed whole (then `latest` names it).
  const int64_t step = VerifiedStep(dir, context + "\n" + log);
  if (saved.ok()) {
    EXPECT_EQ(step, 2) << context << ": Save returned OK but latest is not step 2\n" << log;
  } else {
    EXPECT_TRUE(step == 1 || step == 2) << context << ": " << saved.status();
    EXPECT_FALSE(saved.status().message().empty());
  }
  // Nothing outside the new step's directory changed, but `latest`.
  const std::string step2 = dir + "/step_00000002";
  for (const std::string& p : fault_fs.touched()) {
    const bool allowed = absl::StartsWith(p, step2) || p == dir || p == dir + "/latest" ||
                         absl::StartsWith(p, dir + "/latest.tmp-");
    EXPECT_TRUE(allowed) << context << ": touched " << p << "\n" << log;
  }
  std::map<std::string, std::string> after = Snapshot(root);
  for (const auto& [path, bytes] : before) {
    if (path == dir + "/latest") continue;
    auto it = after.find(path);
    ASSERT_TRUE(it != after.end()) << context << ": " << path << " is gone\n" << log;
    EXPECT_TRUE(it->second == bytes) << context << ": " << path << " changed\n" << log;
  }
  for (const auto& [path, bytes] : after) {
    EXPECT_TRUE(before.count(path) || absl::StartsWith(path, step2) ||
                absl::StartsWith(path, dir + "/latest"))
        << context << ": new file " << path << "\n"
        << log;
  }
  // The job restarts on a healthy disk: the next save cleans up and commits.
  State s3 = MakeState(3);
  auto again = SaveStep(dir, s3, 3, /*keep_last=*/2);
  ASSERT_TRUE(again.ok()) << context << ": " << again.status() << "\n" << log;
  EXPECT_EQ(VerifiedStep(dir, context + " then step 3"), 3);
  auto names = PosixFs().ListDir(dir);
  ASSERT_TRUE(names.ok());
  for (const std::string& name : *names) {
    EXPECT_FALSE(absl::EndsWith(name, ".tmp") || absl::StrContains(name, ".tmp-"))
        << context << ": " << name << " left behind after the next save";
  }
}

TEST(CheckpointFaultsTest, EveryOperationOfASaveFailingLeavesALoadableCheckpoint) {
  const loom::testing::ScopedTempDir tmp("ckpt_faults");
  const std::string root = tmp.path();
  const int64_t ops = OpsOfOneSave(root + "/count");
  ASSERT_GT(ops, 10);
  const std::pair<Fault, const char*> faults[] = {
      {Fault::kNoSpace, "ENOSPC"}, {Fault::kIoError, "EIO"}, {Fault::kShortWrite, "short write"}};
  for (const auto& [fault, name] : faults) {
    for (int64_t n = 1; n <= ops; ++n) {
      RunFaultAt(absl::StrCat(root, "/", static_cast<int>(fault), "_", n), n, fault, name);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(CheckpointFaultsTest, ACrashAfterAnyOperationOfASaveLeavesALoadableCheckpoint) {
  const loom::testing::ScopedTempDir tmp("ckpt_faults");
  const std::string root = tmp.path();
  const int64_t ops = OpsOfOneSave(root + "/count");
  for (int64_t n = 1; n <= ops; ++n) {
    RunFaultAt(absl::StrCat(root, "/crash_", n), n, Fault::kCrash, "crash");
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace loom
