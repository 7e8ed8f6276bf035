#include "data/token_flags.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "data/token_shard.h"
#include "runtime/status.h"

namespace loom {

std::string TokenFlagsPath(const std::string& shard_path) { return shard_path + ".mask"; }

absl::StatusOr<std::unique_ptr<TokenFlags>> TokenFlags::Open(const std::string& path,
                                                             size_t tokens) {
  LOOM_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  const size_t bytes = file.size();
  const std::string p = absl::StrCat("token flags ", path, ": ");
  if (bytes < kLlmcHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat(p, bytes, " bytes, shorter than the header (", kLlmcHeaderBytes, " bytes)"));
  }
  int32_t header[3];
  std::memcpy(header, file.data(), sizeof(header));
  if (header[0] != kTokenFlagsMagic) {
    return absl::DataLossError(
        absl::StrCat(p, "bad magic ", header[0], " at byte 0 (expected ", kTokenFlagsMagic, ")"));
  }
  if (header[1] != kTokenFlagsVersion) {
    return absl::DataLossError(absl::StrCat(p, "unsupported version ", header[1],
                                            " at byte 4 (expected ", kTokenFlagsVersion, ")"));
  }
  if (header[2] < 0 || static_cast<size_t>(header[2]) != tokens) {
    return absl::DataLossError(absl::StrCat(p, "header says ", header[2],
                                            " tokens at byte 8, but its shard holds ", tokens));
  }
  if (bytes != kLlmcHeaderBytes + tokens) {
    return absl::DataLossError(absl::StrCat(p, "expected ", kLlmcHeaderBytes + tokens,
                                            " bytes (header and one byte per token), got ", bytes));
  }
  const uint8_t* f = reinterpret_cast<const uint8_t*>(file.data() + kLlmcHeaderBytes);
  for (size_t i = 0; i < tokens; ++i) {
    if ((f[i] & ~(kLossFlag | kDocStartFlag)) != 0) {
      return absl::DataLossError(absl::StrCat(p, "token ", i, " (byte ", kLlmcHeaderBytes + i,
                                              ") has flags ", static_cast<int>(f[i]),
                                              "; only bits 0 (loss) and 1 (document start) "
                                              "are defined"));
    }
  }
  return std::unique_ptr<TokenFlags>(
      new TokenFlags(path, std::move(file), absl::MakeConstSpan(tokens ? f : nullptr, tokens)));
}

std::string EncodeTokenFlags(absl::Span<const uint8_t> flags) {
  std::string bytes(kLlmcHeaderBytes + flags.size(), '\0');
  int32_t h[kLlmcHeaderInts] = {};
  h[0] = kTokenFlagsMagic;
  h[1] = kTokenFlagsVersion;
  h[2] = static_cast<int32_t>(flags.size());
  std::memcpy(bytes.data(), h, sizeof(h));
  if (!flags.empty()) std::memcpy(bytes.data() + kLlmcHeaderBytes, flags.data(), flags.size());
  return bytes;
}

absl::Status WriteTokenFlags(const std::string& path, absl::Span<const uint8_t> flags) {
  if (flags.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat("token flags ", path, ": ", flags.size(), " tokens exceed the int32 count"));
  }
  return AtomicWriteFile(path, EncodeTokenFlags(flags));
}

}  // namespace loom
