// TensorBoard event files: TFRecord framing and CRCs byte by byte, Events decoded back by our
// own reader, corruption detected with its offset. (tools/read_tensorboard.py checks the same
// files with the real TensorBoard; see CMakeLists.txt.)
#include "metrics/tensorboard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/crc32c.h"
#include "runtime/files.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

uint32_t U32At(const std::string& s, size_t pos) {
  uint32_t v;
  std::memcpy(&v, s.data() + pos, 4);
  return v;
}

TEST(TfRecordTest, FrameLayout) {
  const std::string data = "hello, event";
  const std::string frame = TfRecordFrame(data);
  ASSERT_EQ(frame.size(), 8 + 4 + data.size() + 4);
  uint64_t length;
  std::memcpy(&length, frame.data(), 8);
  EXPECT_EQ(length, data.size());
  EXPECT_EQ(U32At(frame, 8), MaskedCrc32c(Crc32c(frame.data(), 8)));
  EXPECT_EQ(frame.substr(12, data.size()), data);
  EXPECT_EQ(U32At(frame, 12 + data.size()), MaskedCrc32c(Crc32c(data)));
  // A known vector: CRC-32C("123456789") = 0xE3069283, masked as TFRecord does.
  EXPECT_EQ(MaskedCrc32c(Crc32c("123456789")),
            ((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u);
}

TEST(TensorBoardWriterTest, WritesVersionThenOneEventPerStep) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  auto writer = TensorBoardWriter::Create(dir);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::string path = (*writer)->path();
  EXPECT_THAT(fs::path(path).filename().string(), StartsWith("events.out.tfevents."));
  ASSERT_TRUE((*writer)->WriteScalars(1, {{"train/loss", 3.5f}, {"train/lr", 1e-4f}}, 1000.5).ok());
  ASSERT_TRUE((*writer)->WriteScalars(2, {{"train/loss", 0.0f}}).ok());

  // Flushed per step: readable before the writer closes.
  auto events = ReadEventFile(path);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].file_version(), "brain.Event:2");
  EXPECT_GT((*events)[0].wall_time(), 1.6e9);

  const tb::Event& e1 = (*events)[1];
  EXPECT_EQ(e1.step(), 1);
  EXPECT_EQ(e1.wall_time(), 1000.5);
  ASSERT_EQ(e1.summary().value_size(), 2);
  EXPECT_EQ(e1.summary().value(0).tag(), "train/loss");
  EXPECT_EQ(e1.summary().value(0).simple_value(), 3.5f);
  EXPECT_EQ(e1.summary().value(1).tag(), "train/lr");
  EXPECT_EQ(e1.summary().value(1).simple_value(), 1e-4f);
  // A zero is still present (oneof fields keep presence in proto3).
  const tb::Event& e2 = (*events)[2];
  ASSERT_EQ(e2.summary().value_size(), 1);
  EXPECT_TRUE(e2.summary().value(0).has_simple_value());
  EXPECT_EQ(e2.summary().value(0).simple_value(), 0.0f);
}

TEST(TensorBoardWriterTest, SecondWriterInTheSameSecondGetsItsOwnFile) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  auto a = TensorBoardWriter::Create(dir);
  auto b = TensorBoardWriter::Create(dir);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->path(), (*b)->path());
  EXPECT_THAT((*b)->path(), HasSubstr("events.out.tfevents."));
}

TEST(TfRecordTest, CorruptionIsFoundWithItsOffset) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  std::string path;
  {
    auto writer = TensorBoardWriter::Create(dir);
    ASSERT_TRUE(writer.ok());
    path = (*writer)->path();
    ASSERT_TRUE((*writer)->WriteScalars(1, {{"train/loss", 1.0f}}).ok());
  }
  auto original = ReadFile(path);
  ASSERT_TRUE(original.ok());
  auto records = ReadTfRecords(path);
  ASSERT_TRUE(records.ok());
  const size_t second = 16 + (*records)[0].size();  // where record 1 starts

  std::string bad = *original;
  bad[second + 13] ^= 0x40;  // a data byte of record 1
  ASSERT_TRUE(AtomicWriteFile(path, bad).ok());
  auto r = ReadTfRecords(path);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path));
  EXPECT_THAT(r.status().message(),
              HasSubstr("record at byte " + std::to_string(second) + " has a bad data CRC"));

  bad = *original;
  bad[second] ^= 0x01;  // its length
  ASSERT_TRUE(AtomicWriteFile(path, bad).ok());
  EXPECT_THAT(ReadTfRecords(path).status().message(), HasSubstr("bad length CRC"));

  ASSERT_TRUE(AtomicWriteFile(path, original->substr(0, original->size() - 2)).ok());
  EXPECT_THAT(ReadTfRecords(path).status().message(), HasSubstr("the file ends first"));
}

}  // namespace
}  // namespace loom
