// Token shards: both formats round trip, and every kind of bad shard fails at open with the
// file name and where in it the problem is.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/token_shard.h"
#include "runtime/files.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

std::string Join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

std::vector<int32_t> All(const TokenShard& shard) {
  std::vector<int32_t> out(shard.size());
  shard.Read(0, shard.size(), out.data());
  return out;
}

std::vector<uint16_t> Ramp(size_t n, int vocab) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>((i * 7919) % vocab);
  return v;
}

TEST(TokenShardTest, LlmcRoundTrip) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = Join(dir, "a.bin");
  const std::vector<uint16_t> tokens = Ramp(1000, 50257);
  ASSERT_TRUE(WriteShard(path, tokens, ShardFormat::kLlmc).ok());
  EXPECT_EQ(std::filesystem::file_size(path), 1024 + 2 * tokens.size());
  // The header is llm.c's, byte for byte.
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  int32_t header[256];
  std::memcpy(header, bytes->data(), sizeof(header));
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 1000);
  for (int i = 3; i < 256; ++i) EXPECT_EQ(header[i], 0);

  auto shard = TokenShard::Open(path, ShardFormat::kLlmc, 50257);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ((*shard)->path(), path);
  ASSERT_EQ((*shard)->size(), tokens.size());
  EXPECT_EQ((*shard)->id_bytes(), 2);
  EXPECT_EQ(All(**shard), std::vector<int32_t>(tokens.begin(), tokens.end()));
  EXPECT_EQ((*shard)->at(999), tokens[999]);
}

// Vocabularies above 65536 (LLaMA-3: 128256): uint32 ids under llm.c's own LLaMA-3 header.
TEST(TokenShardTest, Llmc32RoundTrip) {
  const testing::ScopedTempDir tmp;
  const std::string path = Join(tmp.path(), "a.bin");
  std::vector<uint32_t> tokens = {0, 65535, 65536, 128000, 128255, 7};
  ASSERT_TRUE(WriteShard32(path, tokens).ok());
  EXPECT_EQ(std::filesystem::file_size(path), 1024 + 4 * tokens.size());
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  int32_t header[256];
  std::memcpy(header, bytes->data(), sizeof(header));
  EXPECT_EQ(header[0], 20240801);
  EXPECT_EQ(header[1], 7);
  EXPECT_EQ(header[2], 6);
  for (int i = 3; i < 256; ++i) EXPECT_EQ(header[i], 0);
  auto shard = TokenShard::Open(path, ShardFormat::kLlmc, 128256);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ((*shard)->id_bytes(), 4);
  EXPECT_EQ(All(**shard), std::vector<int32_t>(tokens.begin(), tokens.end()));
  std::vector<int32_t> part(2);
  (*shard)->Read(2, 2, part.data());
  EXPECT_EQ(part, (std::vector<int32_t>{65536, 128000}));

  // An id at the vocabulary size is named with its index and byte offset.
  auto small = TokenShard::Open(path, ShardFormat::kLlmc, 128255);
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(small.status().message(), HasSubstr("token 4 (byte offset 1040) has id 128255"));
  // Truncated: the size follows the 4-byte ids.
  WriteBytes(path, bytes->substr(0, bytes->size() - 2));
  auto cut = TokenShard::Open(path, ShardFormat::kLlmc, 128256);
  ASSERT_FALSE(cut.ok());
  EXPECT_THAT(cut.status().message(), HasSubstr("truncated after token 5"));
  // The uint32 magic with the uint16 version is not a shard either.
  std::string mixed = *bytes;
  const int32_t one = 1;
  std::memcpy(mixed.data() + 4, &one, 4);
  WriteBytes(path, mixed);
  auto bad = TokenShard::Open(path, ShardFormat::kLlmc, 128256);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("unsupported version 1 at byte 4 (expected 7"));
}

TEST(TokenShardTest, RawU16RoundTrip) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = Join(dir, "a.u16");
  const std::vector<uint16_t> tokens = {0, 1, 65535, 300, 7};
  ASSERT_TRUE(WriteShard(path, tokens, ShardFormat::kRawU16).ok());
  EXPECT_EQ(std::filesystem::file_size(path), 10u);
  auto shard = TokenShard::Open(path, ShardFormat::kRawU16, 65536);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(All(**shard), std::vector<int32_t>(tokens.begin(), tokens.end()));
}

TEST(TokenShardTest, EmptyShardsOpen) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_TRUE(WriteShard(Join(dir, "e.bin"), {}, ShardFormat::kLlmc).ok());
  ASSERT_TRUE(WriteShard(Join(dir, "e.u16"), {}, ShardFormat::kRawU16).ok());
  auto a = TokenShard::Open(Join(dir, "e.bin"), ShardFormat::kLlmc, 10);
  auto b = TokenShard::Open(Join(dir, "e.u16"), ShardFormat::kRawU16, 10);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*a)->size(), 0u);
  EXPECT_EQ((*b)->size(), 0u);
}

TEST(TokenShardTest, BadMagicNamesFileAndOffset) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = Join(dir, "magic.bin");
  std::string bytes = EncodeShard(Ramp(10, 100), ShardFormat::kLlmc);
  bytes[0] ^= 1;
  WriteBytes(path, bytes);
  auto shard = TokenShard::Open(path, ShardFormat::kLlmc, 100);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr(path));
  EXPECT_THAT(shard.status().message(), HasSubstr("bad magic"));
  EXPECT_THAT(shard.status().message(), HasSubstr("byte 0"));
  // A raw uint16 stream opened as llm.c is caught by the magic as well.
  const std::string raw = Join(dir, "raw.u16");
  ASSERT_TRUE(WriteShard(raw, Ramp(600, 100), ShardFormat::kRawU16).ok());
  EXPECT_THAT(TokenShard::Open(raw, ShardFormat::kLlmc, 100).status().message(),
              HasSubstr("bad magic"));
}

TEST(TokenShardTest, BadVersionNamesFileAndOffset) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = Join(dir, "version.bin");
  std::string bytes = EncodeShard(Ramp(10, 100), ShardFormat::kLlmc);
  const int32_t v2 = 2;
  std::memcpy(bytes.data() + 4, &v2, 4);
  WriteBytes(path, bytes);
  auto shard = TokenShard::Open(path, ShardFormat::kLlmc, 100);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr(path));
  EXPECT_THAT(shard.status().message(), HasSubstr("version 2 at byte 4"));
}

TEST(TokenShardTest, ShortFileNamesFileAndWhereItEnds) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = Join(dir, "short.bin");
  std::string bytes = EncodeShard(Ramp(10, 100), ShardFormat::kLlmc);
  bytes.resize(bytes.size() - 3);  // 8.5 of 10 tokens left
  WriteBytes(path, bytes);
  auto shard = TokenShard::Open(path, ShardFormat::kLlmc, 100);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr(path));
  EXPECT_THAT(shard.status().message(), HasSubstr("header says 10 tokens"));
  EXPECT_THAT(shard.status().message(), HasSubstr("truncated after token 8 at byte 1041"));

  // Shorter than the header itself.
  const std::string tiny = Join(dir, "tiny.bin");
  WriteBytes(tiny, bytes.substr(0, 100));
  auto t = TokenShard::Open(tiny, ShardFormat::kLlmc, 100);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr(tiny));
  EXPECT_THAT(t.status().message(), HasSubstr("shorter than the llm.c header"));
}

TEST(TokenShardTest, TrailingBytesAreAnError) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = Join(dir, "long.bin");
  WriteBytes(path, EncodeShard(Ramp(10, 100), ShardFormat::kLlmc) + "xy");
  auto shard = TokenShard::Open(path, ShardFormat::kLlmc, 100);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr(path));
  EXPECT_THAT(shard.status().message(), HasSubstr("trailing data at byte 1044"));
}

TEST(TokenShardTest, OddRawFileNamesTheStrayByte) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = Join(dir, "odd.u16");
  WriteBytes(path, std::string(7, '\0'));
  auto shard = TokenShard::Open(path, ShardFormat::kRawU16, 100);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr(path));
  EXPECT_THAT(shard.status().message(), HasSubstr("offset 6"));
}

TEST(TokenShardTest, TokenOutsideVocabNamesFileIndexAndOffset) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  std::vector<uint16_t> tokens = Ramp(100, 257);
  tokens[42] = 257;
  tokens[77] = 9999;  // only the first bad one is reported
  for (ShardFormat format : {ShardFormat::kLlmc, ShardFormat::kRawU16}) {
    const std::string path = Join(dir, std::string(ShardFormatName(format)) + ".bin");
    ASSERT_TRUE(WriteShard(path, tokens, format).ok());
    auto shard = TokenShard::Open(path, format, 257);
    ASSERT_FALSE(shard.ok());
    const size_t offset = (format == ShardFormat::kLlmc ? 1024 : 0) + 2 * 42;
    EXPECT_THAT(shard.status().message(), HasSubstr(path));
    EXPECT_THAT(shard.status().message(),
                HasSubstr("token 42 (byte offset " + std::to_string(offset) + ") has id 257"));
    EXPECT_THAT(shard.status().message(), HasSubstr("vocab size 257"));
    // With a vocab that holds every id the same file is fine.
    EXPECT_TRUE(TokenShard::Open(path, format, 10000).ok());
  }
}

// The largest id equal to the vocab size is already outside it (ids are 0..vocab-1).
TEST(TokenShardTest, IdEqualToTheVocabSizeIsOutside) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  std::vector<uint16_t> tokens = Ramp(100, 257);
  tokens[10] = 257;
  const std::string path = Join(dir, "edge.bin");
  ASSERT_TRUE(WriteShard(path, tokens, ShardFormat::kLlmc).ok());
  auto shard = TokenShard::Open(path, ShardFormat::kLlmc, 257);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr("token 10 (byte offset 1044) has id 257"));
  EXPECT_TRUE(TokenShard::Open(path, ShardFormat::kLlmc, 258).ok());
}

TEST(TokenShardTest, MissingFileIsNamed) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  auto shard = TokenShard::Open(Join(dir, "nope.bin"), ShardFormat::kLlmc, 100);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(), HasSubstr("nope.bin"));
}

TEST(ShardGlobTest, SortedAndInPatternOrder) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  for (const char* name : {"b_2.bin", "b_10.bin", "a_1.bin", "c.txt"}) {
    WriteBytes(Join(dir, name), "");
  }
  auto paths = ExpandShardGlobs({Join(dir, "b_*.bin"), Join(dir, "a_*.bin")});
  ASSERT_TRUE(paths.ok()) << paths.status();
  EXPECT_EQ(*paths, (std::vector<std::string>{Join(dir, "b_10.bin"), Join(dir, "b_2.bin"),
                                              Join(dir, "a_1.bin")}));
}

TEST(ShardGlobTest, EmptyGlobNamesPattern) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const std::string pattern = Join(dir, "train_*.bin");
  auto paths = ExpandShardGlobs({pattern});
  ASSERT_FALSE(paths.ok());
  EXPECT_EQ(paths.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(paths.status().message(), HasSubstr(pattern));
  EXPECT_THAT(paths.status().message(), HasSubstr("matches no file"));
  EXPECT_FALSE(ExpandShardGlobs({}).ok());
}

TEST(ShardGlobTest, FileMatchedTwiceIsAnError) {
  const testing::ScopedTempDir tmp;
  const std::string dir = tmp.path();
  WriteBytes(Join(dir, "x.bin"), "");
  auto paths = ExpandShardGlobs({Join(dir, "*.bin"), Join(dir, "x.bin")});
  ASSERT_FALSE(paths.ok());
  EXPECT_THAT(paths.status().message(), HasSubstr("x.bin is matched twice"));
}

TEST(ShardFormatTest, Names) {
  EXPECT_EQ(*ParseShardFormat("llmc"), ShardFormat::kLlmc);
  EXPECT_EQ(*ParseShardFormat("raw_u16"), ShardFormat::kRawU16);
  EXPECT_THAT(ParseShardFormat("npy").status().message(), HasSubstr("npy"));
  EXPECT_EQ(ShardFormatName(ShardFormat::kRawU16), "raw_u16");
}

}  // namespace
}  // namespace loom
