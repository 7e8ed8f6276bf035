// ScopedTempDir: the one way a test gets a directory to write in. It is fresh and empty when
// made and removed, with everything in it, when the object goes out of scope (a local: the end
// of the test body; a fixture member: the end of the test), so a run of the suite leaves
// nothing behind in the system temp dir. It lives under ::testing::TempDir() (TEST_TMPDIR when
// set, else /tmp) and is named after the running test, a tag and the process id, so tests run
// in parallel, and the ranks of a multi-rank test, never share one. LOOM_KEEP_TEST_DIRS=1 keeps
// them (and prints where) for a look after a failure.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "gtest/gtest.h"

namespace loom::testing {

class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& tag = "") {
    // Appended piece by piece: GCC 12 warns (-Wrestrict, wrongly) on "_" + tag.
    std::string name = "loom";
    if (const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info()) {
      name.append("_").append(t->test_suite_name()).append(".").append(t->name());
    }
    if (!tag.empty()) name.append("_").append(tag);
    name.append("_").append(std::to_string(::getpid()));
    for (char& c : name) {
      if (c == '/') c = '_';  // parameterized tests: "Suite/Test.Name/0"
    }
    path_ = (std::filesystem::path(::testing::TempDir()) / name).string();
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    std::filesystem::create_directories(path_, ec);
    EXPECT_FALSE(ec) << "cannot create " << path_ << ": " << ec.message();
  }
  ~ScopedTempDir() {
    const char* keep = std::getenv("LOOM_KEEP_TEST_DIRS");
    if (keep != nullptr && *keep != '\0' && std::string(keep) != "0") {
      std::fprintf(stderr, "LOOM_KEEP_TEST_DIRS: kept %s\n", path_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// For tests written against the old helper (branches in flight): a ScopedTempDir that lives
// until the process exits, so it too leaves nothing behind. New tests hold a ScopedTempDir.
inline std::string FreshTempDir(const std::string& tag) {
  static std::vector<std::unique_ptr<ScopedTempDir>> dirs;  // destroyed, and removed, at exit
  dirs.push_back(std::make_unique<ScopedTempDir>(tag));
  return dirs.back()->path();
}

}  // namespace loom::testing
