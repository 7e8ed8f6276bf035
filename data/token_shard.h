// Token shards: files of token ids that the data loader memory-maps read-only.
//
// Two formats, chosen by the caller (a shard's bytes do not say which it is):
//   kLlmc   the llm.c layout: int32 header[256], then header[2] tokens. The header's magic and
//           version give the width of the ids:
//             header[0] = 20240520, header[1] = 1: uint16 ids (llm.c's GPT-2 shards);
//             header[0] = 20240801, header[1] = 7: uint32 ids (llm.c's LLaMA-3 shards), for
//             vocabularies above 65,536 (LLaMA-3: 128,256).
//           Writers pick the narrowest width the vocabulary allows (WriteShard for uint16,
//           WriteShard32 for uint32), so GPT-2-sized data stays readable by llm.c itself.
//   kRawU16 nothing but uint16 tokens (an even number of bytes).
// Both are little-endian. Opening a shard checks everything once: header, exact file size and
// every token id against the vocabulary, so a bad shard fails at startup with the file name and
// the byte offset / token index, never mid-run. Checking the ids is a single fast pass.
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
// llm.c's header for uint32 ids (dev/data/data_common.py, "llama-3").
inline constexpr int32_t kLlmcMagic32 = 20240801;
inline constexpr int32_t kLlmcVersion32 = 7;
inline constexpr size_t kLlmcHeaderInts = 256;
inline constexpr size_t kLlmcHeaderBytes = kLlmcHeaderInts * sizeof(int32_t);

// "llmc" / "raw_u16" (the names a job file uses).
absl::StatusOr<ShardFormat> ParseShardFormat(std::string_view name);
std::string_view ShardFormatName(ShardFormat format);

class TokenShard {
 public:
  // Maps `path` and validates it; every id must be < vocab_size.
  static absl::StatusOr<std::unique_ptr<TokenShard>> Open(const std::string& path,
                                                          ShardFormat format, int vocab_size);

  const std::string& path() const { return path_; }
  // Number of tokens, and the bytes of each id (2 or 4).
  size_t size() const { return size_; }
  int id_bytes() const { return id_bytes_; }
  // Token i (i < size()).
  int32_t at(size_t i) const {
    return id_bytes_ == 2 ? static_cast<int32_t>(reinterpret_cast<const uint16_t*>(data_)[i])
                          : static_cast<int32_t>(reinterpret_cast<const uint32_t*>(data_)[i]);
  }
  // Copies tokens [begin, begin + n) into out[0..n).
  void Read(size_t begin, size_t n, int32_t* out) const;

 private:
  TokenShard(std::string path, MappedFile file, const uint8_t* data, size_t size, int id_bytes)
      : path_(std::move(path)),
        file_(std::move(file)),
        data_(data),
        size_(size),
        id_bytes_(id_bytes) {}
  std::string path_;
  MappedFile file_;
  const uint8_t* data_;  // the first token, inside file_
  size_t size_;
  int id_bytes_;
};

// The bytes of a shard holding `tokens` in `format`.
std::string EncodeShard(absl::Span<const uint16_t> tokens, ShardFormat format);
// Writes a shard atomically (temporary file, fsync, rename): readers see all of it or nothing.
absl::Status WriteShard(const std::string& path, absl::Span<const uint16_t> tokens,
                        ShardFormat format);
// The same for uint32 ids, always in the llm.c layout with the uint32 header.
std::string EncodeShard32(absl::Span<const uint32_t> tokens);
absl::Status WriteShard32(const std::string& path, absl::Span<const uint32_t> tokens);

// The width of ids an llm.c shard needs for a vocabulary: 2 (uint16) up to 65,536 ids, else 4.
int ShardIdBytes(int vocab_size);
// Writes ids (each in 0..vocab-1) as an llm.c shard with `id_bytes` (2 or 4, ShardIdBytes) ids:
// WriteShard or WriteShard32. The one writer `data prepare` and `data sft` share.
absl::Status WriteShardIds(const std::string& path, absl::Span<const int32_t> ids, int id_bytes);

// Expands glob(3) patterns: each pattern's matches sorted, patterns in the order given. A pattern
// that matches nothing, and a file matched twice, are errors naming the pattern / file.
absl::StatusOr<std::vector<std::string>> ExpandShardGlobs(absl::Span<const std::string> patterns);

}  // namespace loom
