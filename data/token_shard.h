// Token shards: files of uint16 token ids that the data loader memory-maps read-only.
//
// Two formats, chosen by the caller (a shard's bytes do not say which it is):
//   kLlmc   the llm.c layout: int32 header[256] (header[0] = 20240520 magic, header[1] = 1
//           version, header[2] = token count), then exactly that many uint16 tokens.
//   kRawU16 nothing but uint16 tokens (an even number of bytes).
// Both are little-endian. Opening a shard checks everything once: header, exact file size and
// every token id against the vocabulary, so a bad shard fails at startup with the file name and
// the byte offset / token index, never mid-run. Checking uint16 ids is a single fast pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/files.h"

namespace loom {

enum class ShardFormat { kLlmc, kRawU16 };

inline constexpr int32_t kLlmcMagic = 20240520;
inline constexpr int32_t kLlmcVersion = 1;
inline constexpr size_t kLlmcHeaderInts = 256;
inline constexpr size_t kLlmcHeaderBytes = kLlmcHeaderInts * sizeof(int32_t);

// "llmc" / "raw_u16" (the names a job file uses).
absl::StatusOr<ShardFormat> ParseShardFormat(std::string_view name);
std::string_view ShardFormatName(ShardFormat format);

class TokenShard {
 public:
  // Maps `path` and validates it; every id must be < vocab_size (<= 65536).
  static absl::StatusOr<std::unique_ptr<TokenShard>> Open(const std::string& path,
                                                          ShardFormat format, int vocab_size);

  const std::string& path() const { return path_; }
  // Number of tokens, and the tokens themselves (valid while the shard lives).
  size_t size() const { return tokens_.size(); }
  absl::Span<const uint16_t> tokens() const { return tokens_; }

 private:
  TokenShard(std::string path, MappedFile file, absl::Span<const uint16_t> tokens)
      : path_(std::move(path)), file_(std::move(file)), tokens_(tokens) {}
  std::string path_;
  MappedFile file_;
  absl::Span<const uint16_t> tokens_;
};

// The bytes of a shard holding `tokens` in `format`.
std::string EncodeShard(absl::Span<const uint16_t> tokens, ShardFormat format);
// Writes a shard atomically (temporary file, fsync, rename): readers see all of it or nothing.
absl::Status WriteShard(const std::string& path, absl::Span<const uint16_t> tokens,
                        ShardFormat format);

// Expands glob(3) patterns: each pattern's matches sorted, patterns in the order given. A pattern
// that matches nothing, and a file matched twice, are errors naming the pattern / file.
absl::StatusOr<std::vector<std::string>> ExpandShardGlobs(absl::Span<const std::string> patterns);

}  // namespace loom
