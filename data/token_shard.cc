#include "data/token_shard.h"

#include <glob.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace loom {

// Shards are little-endian and read in place.
static_assert(std::endian::native == std::endian::little, "token shards assume little-endian");

absl::StatusOr<ShardFormat> ParseShardFormat(std::string_view name) {
  if (name == "llmc") return ShardFormat::kLlmc;
  if (name == "raw_u16") return ShardFormat::kRawU16;
  return absl::InvalidArgumentError(absl::StrCat("unknown token shard format \"", std::string(name),
                                                 "\" (expected \"llmc\" or \"raw_u16\")"));
}

std::string_view ShardFormatName(ShardFormat format) {
  return format == ShardFormat::kLlmc ? "llmc" : "raw_u16";
}

namespace {

// The first token >= vocab, for the message (there is one).
template <typename T>
absl::Status BadId(const std::string& path, const T* tokens, size_t offset, uint64_t vocab) {
  size_t i = 0;
  while (tokens[i] < vocab) ++i;
  return absl::InvalidArgumentError(
      absl::StrCat("token shard ", path, ": token ", i, " (byte offset ", offset + i * sizeof(T),
                   ") has id ", tokens[i], ", not below the vocab size ", vocab));
}

template <typename T>
T MaxId(const T* tokens, size_t count) {
  T max_id = 0;
  for (size_t i = 0; i < count; ++i) max_id = std::max(max_id, tokens[i]);
  return max_id;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenShard>> TokenShard::Open(const std::string& path,
                                                             ShardFormat format, int vocab_size) {
  LOOM_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  const size_t bytes = file.size();
  size_t offset = 0;  // where the tokens start
  size_t count = 0;
  size_t width = sizeof(uint16_t);
  if (format == ShardFormat::kLlmc) {
    if (bytes < kLlmcHeaderBytes) {
      return absl::DataLossError(absl::StrCat("token shard ", path, ": ", bytes,
                                              " bytes, shorter than the llm.c header (",
                                              kLlmcHeaderBytes, " bytes)"));
    }
    int32_t header[3];
    std::memcpy(header, file.data(), sizeof(header));
    if (header[0] != kLlmcMagic && header[0] != kLlmcMagic32) {
      return absl::DataLossError(absl::StrCat("token shard ", path, ": bad magic ", header[0],
                                              " at byte 0 (expected ", kLlmcMagic, " or ",
                                              kLlmcMagic32, "; is this an llm.c shard?)"));
    }
    const int32_t version = header[0] == kLlmcMagic ? kLlmcVersion : kLlmcVersion32;
    if (header[1] != version) {
      return absl::DataLossError(absl::StrCat("token shard ", path, ": unsupported version ",
                                              header[1], " at byte 4 (expected ", version,
                                              " after magic ", header[0], ")"));
    }
    if (header[2] < 0) {
      return absl::DataLossError(
          absl::StrCat("token shard ", path, ": negative token count ", header[2], " at byte 8"));
    }
    width = header[0] == kLlmcMagic ? sizeof(uint16_t) : sizeof(uint32_t);
    offset = kLlmcHeaderBytes;
    count = static_cast<size_t>(header[2]);
    const size_t expected = offset + count * width;
    if (bytes < expected) {
      return absl::DataLossError(absl::StrCat(
          "token shard ", path, ": header says ", count, " tokens (", expected,
          " bytes with the header) but the file has ", bytes, " bytes: truncated after token ",
          (bytes - offset) / width, " at byte ", bytes));
    }
    if (bytes > expected) {
      return absl::DataLossError(absl::StrCat("token shard ", path, ": header says ", count,
                                              " tokens (", expected,
                                              " bytes with the header) but "
                                              "the file has ",
                                              bytes,
                                              " bytes: trailing data at "
                                              "byte ",
                                              expected));
    }
  } else {
    if (bytes % sizeof(uint16_t) != 0) {
      return absl::DataLossError(absl::StrCat("token shard ", path, ": ", bytes,
                                              " bytes is not a whole number of uint16 tokens: "
                                              "stray byte at offset ",
                                              bytes - 1));
    }
    count = bytes / sizeof(uint16_t);
  }
  const uint8_t* data = count == 0 ? nullptr : file.data() + offset;
  // One pass over every id now, so a bad id fails at startup and not mid-run.
  const uint64_t vocab = static_cast<uint64_t>(std::max(vocab_size, 0));
  if (count > 0 && width == sizeof(uint16_t)) {
    const auto* t = reinterpret_cast<const uint16_t*>(data);
    if (MaxId(t, count) >= vocab) return BadId(path, t, offset, vocab);
  } else if (count > 0) {
    const auto* t = reinterpret_cast<const uint32_t*>(data);
    if (MaxId(t, count) >= vocab) return BadId(path, t, offset, vocab);
  }
  return std::unique_ptr<TokenShard>(
      new TokenShard(path, std::move(file), data, count, static_cast<int>(width)));
}

void TokenShard::Read(size_t begin, size_t n, int32_t* out) const {
  if (id_bytes_ == 2) {
    const auto* t = reinterpret_cast<const uint16_t*>(data_) + begin;
    for (size_t i = 0; i < n; ++i) out[i] = t[i];
  } else {
    const auto* t = reinterpret_cast<const uint32_t*>(data_) + begin;
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(t[i]);
  }
}

std::string EncodeShard(absl::Span<const uint16_t> tokens, ShardFormat format) {
  std::string bytes;
  const size_t header = format == ShardFormat::kLlmc ? kLlmcHeaderBytes : 0;
  bytes.resize(header + tokens.size() * sizeof(uint16_t));
  if (format == ShardFormat::kLlmc) {
    int32_t h[kLlmcHeaderInts] = {};
    h[0] = kLlmcMagic;
    h[1] = kLlmcVersion;
    h[2] = static_cast<int32_t>(tokens.size());
    std::memcpy(bytes.data(), h, sizeof(h));
  }
  if (!tokens.empty()) {
    std::memcpy(bytes.data() + header, tokens.data(), tokens.size() * sizeof(uint16_t));
  }
  return bytes;
}

absl::Status WriteShard(const std::string& path, absl::Span<const uint16_t> tokens,
                        ShardFormat format) {
  if (format == ShardFormat::kLlmc && tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat("token shard ", path, ": ", tokens.size(),
                                                   " tokens do not fit the llm.c header's int32 "
                                                   "count"));
  }
  return AtomicWriteFile(path, EncodeShard(tokens, format));
}

std::string EncodeShard32(absl::Span<const uint32_t> tokens) {
  std::string bytes(kLlmcHeaderBytes + tokens.size() * sizeof(uint32_t), '\0');
  int32_t h[kLlmcHeaderInts] = {};
  h[0] = kLlmcMagic32;
  h[1] = kLlmcVersion32;
  h[2] = static_cast<int32_t>(tokens.size());
  std::memcpy(bytes.data(), h, sizeof(h));
  if (!tokens.empty()) {
    std::memcpy(bytes.data() + kLlmcHeaderBytes, tokens.data(), tokens.size() * sizeof(uint32_t));
  }
  return bytes;
}

absl::Status WriteShard32(const std::string& path, absl::Span<const uint32_t> tokens) {
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat("token shard ", path, ": ", tokens.size(),
                                                   " tokens do not fit the llm.c header's int32 "
                                                   "count"));
  }
  return AtomicWriteFile(path, EncodeShard32(tokens));
}

int ShardIdBytes(int vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

absl::Status WriteShardIds(const std::string& path, absl::Span<const int32_t> ids, int id_bytes) {
  if (id_bytes == 2) {
    std::vector<uint16_t> narrow(ids.begin(), ids.end());
    return WriteShard(path, narrow, ShardFormat::kLlmc);
  }
  std::vector<uint32_t> wide(ids.begin(), ids.end());
  return WriteShard32(path, wide);
}

absl::StatusOr<std::vector<std::string>> ExpandShardGlobs(absl::Span<const std::string> patterns) {
  if (patterns.empty()) return absl::InvalidArgumentError("no token shard pattern given");
  std::vector<std::string> paths;
  std::set<std::string> seen;
  for (const std::string& pattern : patterns) {
    glob_t g;
    // No GLOB_ERR: a directory of the pattern that is missing is "matches no file", not an abort.
    const int rc = glob(pattern.c_str(), 0, nullptr, &g);
    std::vector<std::string> matches;
    if (rc == 0) matches.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    if (rc == GLOB_NOMATCH || (rc == 0 && matches.empty())) {
      return absl::NotFoundError(absl::StrCat("token shard pattern ", pattern, " matches no file"));
    }
    if (rc != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("token shard pattern ", pattern, ": glob failed (",
                       rc == GLOB_ABORTED ? "read error" : "out of memory", ")"));
    }
    std::sort(matches.begin(), matches.end());  // glob sorts by locale; make it bytewise
    for (std::string& m : matches) {
      if (!seen.insert(m).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("token shard ", m, " is matched twice (again by ", pattern,
                         "); it would be read twice as often as the others"));
      }
      paths.push_back(std::move(m));
    }
  }
  return paths;
}

}  // namespace loom
