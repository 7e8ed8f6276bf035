// ScopedTempDir (tests/temp_dir.h): a fresh, empty directory named after the test, removed with
// its contents at the end of its scope, kept under LOOM_KEEP_TEST_DIRS=1; FreshTempDir's at exit.
#include "tests/temp_dir.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

TEST(ScopedTempDirTest, FreshNamedAfterTheTestAndRemovedWithItsContents) {
  std::string path;
  {
    testing::ScopedTempDir tmp("tag");
    path = tmp.path();
    EXPECT_TRUE(fs::is_directory(path));
    EXPECT_TRUE(fs::is_empty(path));
    EXPECT_NE(path.find("ScopedTempDirTest.FreshNamedAfterTheTestAndRemovedWithItsContents_tag_"),
              std::string::npos)
        << path;
    EXPECT_EQ(path.rfind(::testing::TempDir(), 0), 0u) << path;
    fs::create_directories(tmp / "a/b");
    std::ofstream(tmp / "a/b/file") << "x";
    EXPECT_EQ(tmp / "a", path + "/a");
  }
  EXPECT_FALSE(fs::exists(path)) << path << " outlived its ScopedTempDir";
}

TEST(ScopedTempDirTest, StartsEmptyEvenWhereAnEarlierRunLeftFiles) {
  std::string path;
  {
    testing::ScopedTempDir first;
    path = first.path();
    ::setenv("LOOM_KEEP_TEST_DIRS", "1", 1);
    std::ofstream(first / "left") << "x";
  }
  ::unsetenv("LOOM_KEEP_TEST_DIRS");
  ASSERT_TRUE(fs::exists(path + "/left")) << "LOOM_KEEP_TEST_DIRS=1 did not keep " << path;
  {
    testing::ScopedTempDir again;
    EXPECT_EQ(again.path(), path);
    EXPECT_TRUE(fs::is_empty(path));
  }
  EXPECT_FALSE(fs::exists(path));
}

// The old helper's stand-in: its directory lives until the process exits, then goes.
TEST(ScopedTempDirTest, FreshTempDirIsRemovedWhenTheProcessExits) {
  testing::ScopedTempDir parent;
  const std::string note = parent / "path";
  EXPECT_EXIT(
      {
        const std::string dir = testing::FreshTempDir("old");
        { std::ofstream(note) << dir; }
        std::exit(fs::is_directory(dir) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  std::ifstream in(note);
  std::string dir;
  std::getline(in, dir);
  ASSERT_FALSE(dir.empty());
  EXPECT_NE(dir.find("_old_"), std::string::npos) << dir;
  EXPECT_FALSE(fs::exists(dir)) << dir << " outlived the process";
}

}  // namespace
}  // namespace loom
