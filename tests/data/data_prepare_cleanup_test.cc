// `data prepare` leaves nothing behind when it fails, and names binary inputs so the CLI can
// warn about them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "data/data_prepare.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(DataPrepareCleanupTest, AFailedRunCreatesNoOutputDirectory) {
  const testing::ScopedTempDir tmp;
  const fs::path dir = tmp.path();
  Write(dir / "in" / "a.txt", "hello world\n");
  DataPrepareOptions options;
  options.out_dir = (dir / "made" / "by" / "prepare").string();
  // Bad options and bad inputs are found before anything is created ...
  options.inputs = {(dir / "in" / "missing.txt").string()};
  EXPECT_FALSE(PrepareData(options).ok());
  EXPECT_FALSE(fs::exists(dir / "made"));
  // ... and a read error half-way (reading /proc/self/mem at offset 0 fails with EIO) removes
  // the directories the run had made.
  if (!fs::is_regular_file("/proc/self/mem")) GTEST_SKIP() << "no /proc/self/mem here";
  options.inputs = {(dir / "in" / "a.txt").string(), "/proc/self/mem"};
  auto failed = PrepareData(options);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(std::string(failed.status().message()).find("/proc/self/mem"), std::string::npos)
      << failed.status();
  EXPECT_FALSE(fs::exists(dir / "made")) << "a failed run left its output directory";
  // An output directory that was there before stays.
  fs::create_directories(dir / "kept");
  options.out_dir = (dir / "kept").string();
  EXPECT_FALSE(PrepareData(options).ok());
  EXPECT_TRUE(fs::exists(dir / "kept"));
  // The same inputs without the bad one succeed and create it.
  options.inputs = {(dir / "in" / "a.txt").string()};
  options.out_dir = (dir / "made" / "by" / "prepare").string();
  ASSERT_TRUE(PrepareData(options).ok());
  EXPECT_TRUE(fs::exists(dir / "made" / "by" / "prepare" / "train_000000.bin"));
}

TEST(DataPrepareCleanupTest, BinaryInputsAreListed) {
  const testing::ScopedTempDir tmp;
  const fs::path dir = tmp.path();
  Write(dir / "in" / "a.txt", "plain text, no surprises\n");
  Write(dir / "in" / "b.bin", std::string("\x7f"
                                          "ELF\x02\x01\x01\0\0\0",
                                          10));
  Write(dir / "in" / "c.txt", "more text\n");
  DataPrepareOptions options;
  options.inputs = {(dir / "in").string()};
  options.out_dir = (dir / "out").string();
  options.val_fraction = 0;
  auto r = PrepareData(options);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->binary_documents.size(), 1u);
  EXPECT_EQ(r->binary_documents[0], (dir / "in" / "b.bin").string());
  EXPECT_EQ(r->documents, 3);
}

}  // namespace
}  // namespace loom
