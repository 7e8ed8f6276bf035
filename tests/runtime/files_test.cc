#include "runtime/files.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = tmp_.path(); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir_.c_str());
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    return names;
  }

  testing::ScopedTempDir tmp_{"files"};
  std::string dir_;
};

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

TEST_F(FilesTest, AtomicWriteThenReadRoundTrips) {
  std::string bytes("header\0\x01\xff binary", 17);
  ASSERT_TRUE(AtomicWriteFile(Path("a.bin"), bytes).ok());
  auto read = ReadFile(Path("a.bin"));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);

  // Overwrite with something longer, then with nothing.
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4097) big[i] = static_cast<char>(i);
  ASSERT_TRUE(AtomicWriteFile(Path("a.bin"), big).ok());
  EXPECT_EQ(*ReadFile(Path("a.bin")), big);
  ASSERT_TRUE(AtomicWriteFile(Path("a.bin"), "").ok());
  EXPECT_EQ(*ReadFile(Path("a.bin")), "");
  // No temporary files are left beside the target.
  EXPECT_EQ(Entries(), std::vector<std::string>{"a.bin"});
}

TEST_F(FilesTest, AtomicWriteIntoMissingDirectoryNamesThePath) {
  std::string path = Path("missing/x.txt");
  absl::Status st = AtomicWriteFile(path, "data");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find(path), absl::string_view::npos) << st;
  EXPECT_NE(st.message().find("No such file or directory"), absl::string_view::npos) << st;
}

TEST_F(FilesTest, FailedRenameKeepsTheOldTargetAndRemovesTheTemporary) {
  // A directory where the file should go: the rename fails after the data is written.
  ASSERT_TRUE(MakeDirs(Path("target/inner")).ok());
  absl::Status st = AtomicWriteFile(Path("target"), "data");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(Path("target")), absl::string_view::npos) << st;
  EXPECT_TRUE(IsDir(Path("target/inner")));
  EXPECT_EQ(Entries(), std::vector<std::string>{"target"});
}

TEST_F(FilesTest, ConcurrentWritersLeaveOneWholeVersion) {
  const int kWriters = 6;
  std::vector<std::string> versions;
  for (int w = 0; w < kWriters; ++w) versions.push_back(std::string(100000 + w, 'a' + w));
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int k = 0; k < 5; ++k) EXPECT_TRUE(AtomicWriteFile(Path("shared"), versions[w]).ok());
    });
  }
  for (auto& t : threads) t.join();
  std::string final_bytes = *ReadFile(Path("shared"));
  bool matches_one = false;
  for (const auto& v : versions) matches_one |= final_bytes == v;
  EXPECT_TRUE(matches_one) << "torn file of " << final_bytes.size() << " bytes";
  EXPECT_EQ(Entries(), std::vector<std::string>{"shared"});
}

TEST_F(FilesTest, ReadFileErrors) {
  auto missing = ReadFile(Path("nope"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(Path("nope")), absl::string_view::npos);
  auto dir = ReadFile(dir_);
  EXPECT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("Is a directory"), absl::string_view::npos)
      << dir.status();
}

TEST_F(FilesTest, MappedFileSeesTheContents) {
  std::string bytes(10000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(AtomicWriteFile(Path("m"), bytes).ok());
  auto m = MappedFile::Open(Path("m"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->size(), bytes.size());
  EXPECT_EQ(m->view(), bytes);
  EXPECT_EQ(m->path(), Path("m"));

  // Moving hands the mapping over; the source is left empty.
  MappedFile moved = std::move(*m);
  EXPECT_EQ(m->data(), nullptr);
  EXPECT_EQ(m->size(), 0u);
  EXPECT_EQ(moved.view(), bytes);
  MappedFile assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.view(), bytes);
  EXPECT_EQ(moved.data(), nullptr);
}

TEST_F(FilesTest, MappedFileEdgeCases) {
  ASSERT_TRUE(AtomicWriteFile(Path("empty"), "").ok());
  auto empty = MappedFile::Open(Path("empty"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_EQ(empty->data(), nullptr);

  auto missing = MappedFile::Open(Path("nope"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(Path("nope")), absl::string_view::npos);

  auto dir = MappedFile::Open(dir_);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dir.status().message().find("not a regular file"), absl::string_view::npos);
}

TEST_F(FilesTest, MakeDirs) {
  ASSERT_TRUE(MakeDirs(Path("a/b/c")).ok());
  EXPECT_TRUE(IsDir(Path("a/b/c")));
  EXPECT_TRUE(MakeDirs(Path("a/b/c")).ok());  // already there
  EXPECT_TRUE(MakeDirs(Path("a//b/d/")).ok());
  EXPECT_TRUE(IsDir(Path("a/b/d")));
  EXPECT_TRUE(MakeDirs(dir_).ok());
  EXPECT_EQ(MakeDirs("").code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(AtomicWriteFile(Path("a/file"), "x").ok());
  absl::Status st = MakeDirs(Path("a/file/sub"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  std::string want = absl::StrCat("'", Path("a/file"), "' exists and is not a directory");
  EXPECT_NE(st.message().find(want), absl::string_view::npos) << st;
}

TEST_F(FilesTest, MakeDirsRacesAreHarmless) {
  // Every rank of a job may create the same checkpoint directory at once.
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] { EXPECT_TRUE(MakeDirs(Path("x/y/z/w")).ok()); });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(IsDir(Path("x/y/z/w")));
}

TEST_F(FilesTest, FsyncDir) {
  EXPECT_TRUE(FsyncDir(dir_).ok());
  EXPECT_EQ(FsyncDir(Path("nope")).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(AtomicWriteFile(Path("f"), "x").ok());
  absl::Status st = FsyncDir(Path("f"));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Not a directory"), absl::string_view::npos) << st;
}

TEST_F(FilesTest, DurableRename) {
  ASSERT_TRUE(MakeDirs(Path("tmp_step/shards")).ok());
  ASSERT_TRUE(AtomicWriteFile(Path("tmp_step/shards/r0"), "shard").ok());
  ASSERT_TRUE(DurableRename(Path("tmp_step"), Path("step_1")).ok());
  EXPECT_EQ(*ReadFile(Path("step_1/shards/r0")), "shard");
  EXPECT_FALSE(IsDir(Path("tmp_step")));
  absl::Status st = DurableRename(Path("tmp_step"), Path("step_2"));
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find(Path("tmp_step")), absl::string_view::npos) << st;
}

TEST_F(FilesTest, RelativePathsUseTheWorkingDirectory) {
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(::chdir(dir_.c_str()), 0);
  absl::Status st = AtomicWriteFile("rel.txt", "relative");  // parent is "."
  std::string back = ReadFile("rel.txt").value_or("");
  ASSERT_EQ(::chdir(cwd), 0);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(back, "relative");
}

}  // namespace
}  // namespace loom
