// Token flags: the side file that turns a token shard into supervised fine-tuning data. Beside a
// shard `X` (any format), `X.mask` holds one byte of flags per token of X:
//   bit 0 (kLossFlag)      the token counts as a prediction target: the loss of predicting it
//                          from the tokens before it is part of the objective (a response
//                          token); a token without it is context only (prompt, template, pad);
//   bit 1 (kDocStartFlag)  the token begins a packed example: attention from this token on does
//                          not reach tokens before it (block-diagonal causal attention).
// The other bits must be 0. File layout (little-endian), modelled on llm.c's shard header:
// int32 header[256] (header[0] = 20241206 magic, header[1] = 1 version, header[2] = token
// count, equal to the shard's), then exactly that many flag bytes. Opening checks all of it
// once, so a bad side file fails at startup naming the file and the byte.
//
// The data loader (data/data_loader.h) turns flags into what the model reads: a target whose
// token lacks kLossFlag becomes -1 (the cross-entropy ignores it), and the input positions get
// segment ids that grow by one at each kDocStartFlag.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/files.h"

namespace loom {

inline constexpr int32_t kTokenFlagsMagic = 20241206;
inline constexpr int32_t kTokenFlagsVersion = 1;
inline constexpr uint8_t kLossFlag = 1;
inline constexpr uint8_t kDocStartFlag = 2;

// The side file of a shard: shard_path + ".mask".
std::string TokenFlagsPath(const std::string& shard_path);

class TokenFlags {
 public:
  // Maps `path` and checks header, size (the shard's `tokens` count) and every byte.
  static absl::StatusOr<std::unique_ptr<TokenFlags>> Open(const std::string& path, size_t tokens);
  const std::string& path() const { return path_; }
  absl::Span<const uint8_t> flags() const { return flags_; }

 private:
  TokenFlags(std::string path, MappedFile file, absl::Span<const uint8_t> flags)
      : path_(std::move(path)), file_(std::move(file)), flags_(flags) {}
  std::string path_;
  MappedFile file_;
  absl::Span<const uint8_t> flags_;
};

// The bytes of a flags file, and an atomic write of one (temporary file, fsync, rename).
std::string EncodeTokenFlags(absl::Span<const uint8_t> flags);
absl::Status WriteTokenFlags(const std::string& path, absl::Span<const uint8_t> flags);

}  // namespace loom
