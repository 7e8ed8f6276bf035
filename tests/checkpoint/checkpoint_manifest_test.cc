// A checkpoint's manifest is input like any other file (issue 19): it may name only its own
// data files, its sizes are bounded by the files' real sizes before anything is allocated, and
// a checkpoint.dir whose `latest` was lost resumes from its newest complete step.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "runtime/files.h"
#include "tests/checkpoint/checkpoint_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using testing::MakeState;
using testing::SaveStep;
using testing::State;

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path();
    dir_ = root_ + "/ckpt";
    State s = MakeState(1);
    ASSERT_TRUE(SaveStep(dir_, s, 1).ok());
    step_ = dir_ + "/step_00000001";
    auto bytes = ReadFile(step_ + "/manifest.pb");
    ASSERT_TRUE(bytes.ok());
    ASSERT_TRUE(m_.ParseFromString(*bytes));
    ASSERT_EQ(m_.files_size(), 1);
  }
  // Rewrites the manifest, then opens the checkpoint.
  absl::Status Reopen() {
    EXPECT_TRUE(AtomicWriteFile(step_ + "/manifest.pb", m_.SerializeAsString()).ok());
    return CheckpointReader::Open(step_).status();
  }
  loom::testing::ScopedTempDir tmp_{"ckpt_manifest"};
  std::string root_, dir_, step_;
  CheckpointManifest m_;
};

TEST_F(ManifestTest, TheSavedOneOpensAndVerifies) {
  auto r = CheckpointReader::Open(step_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)->VerifyAll().ok());
}

TEST_F(ManifestTest, AFileNameOutsideTheStepDirIsRefused) {
  // A copy of the real data file outside the checkpoint: before, it was read (and verified OK).
  ASSERT_TRUE(MakeDirs(root_ + "/outside").ok());
  const std::string real = step_ + "/" + m_.files(0).name();
  ASSERT_TRUE(AtomicWriteFile(root_ + "/outside/x.bin", *ReadFile(real)).ok());
  for (const std::string& name :
       std::vector<std::string>{"../../outside/x.bin", root_ + "/outside/x.bin", "..", "",
                                "../../../../../../etc/passwd"}) {
    CheckpointManifest saved = m_;
    m_.mutable_files(0)->set_name(name);
    for (auto& s : *m_.mutable_slices()) s.set_file(name);
    absl::Status st = Reopen();
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << name << ": " << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "not a plain file name")) << st;
    m_ = saved;
  }
  // A slice naming a file that is not in the file table, even a plain one.
  ASSERT_TRUE(AtomicWriteFile(step_ + "/other.bin", *ReadFile(real)).ok());
  for (const std::string& name : std::vector<std::string>{"../../outside/x.bin", "other.bin"}) {
    CheckpointManifest saved = m_;
    m_.mutable_slices(0)->set_file(name);
    absl::Status st = Reopen();
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "not in the manifest's file table")) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), name)) << st;
    m_ = saved;
  }
}

TEST_F(ManifestTest, SizesAreBoundedByTheFilesBeforeAnyAllocation) {
  // A global shape of 1e15 rows (verify used to allocate it: std::bad_alloc, exit 134).
  for (int64_t rows : {int64_t{10'000'000}, int64_t{1'000'000'000'000'000}, int64_t{-1}}) {
    CheckpointManifest saved = m_;
    m_.mutable_tensors(0)->set_global_shape(0, rows);
    absl::Status st = Reopen();
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << rows << ": " << st;
    EXPECT_TRUE(absl::StrContains(st.message(), m_.tensors(0).name())) << st;
    m_ = saved;
  }
  // int64 overflow of the element count.
  {
    CheckpointManifest saved = m_;
    m_.mutable_tensors(0)->set_global_shape(0, int64_t{1} << 40);
    m_.mutable_tensors(0)->set_global_shape(1, int64_t{1} << 40);
    EXPECT_EQ(Reopen().code(), absl::StatusCode::kDataLoss);
    m_ = saved;
  }
  // A slice whose box leaves its tensor, or whose bytes lie past its file's end.
  {
    CheckpointManifest saved = m_;
    m_.mutable_slices(0)->set_extent(0, 1'000'000);
    absl::Status st = Reopen();
    EXPECT_TRUE(absl::StrContains(st.message(), "outside the tensor's global shape")) << st;
    m_ = saved;
    m_.mutable_slices(0)->set_byte_offset(int64_t{1} << 50);
    st = Reopen();
    EXPECT_TRUE(absl::StrContains(st.message(), "lies past its end")) << st;
    m_ = saved;
  }
  // A file table that lies about a size: the real size wins.
  {
    CheckpointManifest saved = m_;
    m_.mutable_files(0)->set_size(m_.files(0).size() * 1000);
    absl::Status st = Reopen();
    EXPECT_TRUE(absl::StrContains(st.message(), "the manifest records")) << st;
    m_ = saved;
  }
  EXPECT_TRUE(Reopen().ok());
}

TEST(LatestTest, ALostLatestResumesFromTheNewestCompleteStep) {
  const loom::testing::ScopedTempDir tmp("ckpt_latest");
  const std::string dir = tmp / "ckpt";
  for (int step = 1; step <= 3; ++step) {
    State s = MakeState(static_cast<float>(step));
    ASSERT_TRUE(SaveStep(dir, s, step).ok());
  }
  ASSERT_EQ(std::remove((dir + "/latest").c_str()), 0);
  auto latest = LatestCheckpoint(dir);
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(latest->has_value()) << "a lost `latest` must not mean a fresh start";
  EXPECT_EQ(**latest, dir + "/step_00000003");
  auto resolved = ResolveCheckpoint(dir);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, dir + "/step_00000003");
  // The newest is damaged (a truncated data file): the one before, naming why.
  auto newest = FindNewestCompleteCheckpoint(dir);
  ASSERT_TRUE(newest.ok());
  EXPECT_TRUE(newest->skipped.empty());
  ASSERT_TRUE(AtomicWriteFile(dir + "/step_00000003/rank_00000.bin", "short").ok());
  newest = FindNewestCompleteCheckpoint(dir);
  ASSERT_TRUE(newest.ok());
  EXPECT_EQ(newest->path, dir + "/step_00000002");
  ASSERT_EQ(newest->skipped.size(), 1u);
  EXPECT_TRUE(absl::StrContains(newest->skipped[0], "step_00000003")) << newest->skipped[0];
  EXPECT_EQ(**LatestCheckpoint(dir), dir + "/step_00000002");
}

TEST(LatestTest, NoCompleteStepIsAnErrorNotAFreshStart) {
  const loom::testing::ScopedTempDir tmp("ckpt_latest");
  const std::string dir = tmp / "ckpt";
  State s = MakeState(1);
  ASSERT_TRUE(SaveStep(dir, s, 1).ok());
  ASSERT_EQ(std::remove((dir + "/latest").c_str()), 0);
  ASSERT_EQ(std::remove((dir + "/step_00000001/manifest.pb").c_str()), 0);
  auto latest = LatestCheckpoint(dir);
  EXPECT_FALSE(latest.ok());
  EXPECT_TRUE(absl::StrContains(latest.status().message(), "step_00000001")) << latest.status();
  // An empty (or absent) checkpoint.dir is a fresh start.
  auto fresh = LatestCheckpoint(tmp / "none");
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->has_value());
}

}  // namespace
}  // namespace loom
