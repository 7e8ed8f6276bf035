// Fuzz target: token shards (data/token_shard.h), as the data loader and `loom data` open them.
// The first byte of an input picks the format (llm.c or raw uint16) and the vocabulary; the
// rest is the file. An llm.c file is either header: GPT-2's uint16 ids (20240520, version 1)
// or LLaMA-3's uint32 ids (20240801, version 7). Any bytes either open, every token inside the
// vocabulary, or are refused with a Status naming the file.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/token_shard.h"
#include "runtime/files.h"
#include "tests/fuzz/fuzz_target.h"

namespace {

constexpr int kVocabs[] = {257, 50257, 65536, 1};
// Byte 0 bit 3: LLaMA-3's vocabulary, ids above 65535 (only a uint32 shard holds them).
constexpr int kLlama3Vocab = 128256;

}  // namespace

namespace loom::fuzz {

absl::Status WriteSeeds(const std::string& dir) {
  std::vector<uint16_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back(static_cast<uint16_t>((i * 37) % 257));
  // Byte 0: bit 0 = raw uint16, bits 1-2 = vocabulary (kVocabs), bit 3 = kLlama3Vocab.
  if (absl::Status s = AtomicWriteFile(
          dir + "/llmc.bin", std::string(1, '\0') + EncodeShard(tokens, ShardFormat::kLlmc));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = AtomicWriteFile(
          dir + "/raw_u16.bin", std::string(1, '\1') + EncodeShard(tokens, ShardFormat::kRawU16));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = AtomicWriteFile(dir + "/llmc_empty.bin",
                                       std::string(1, '\2') + EncodeShard({}, ShardFormat::kLlmc));
      !s.ok()) {
    return s;
  }
  // LLaMA-3's uint32 header (magic 20240801, version 7) with ids on both sides of 65535.
  std::vector<uint32_t> tokens32;
  for (int i = 0; i < 40; ++i) tokens32.push_back(static_cast<uint32_t>((i * 3203) % kLlama3Vocab));
  return AtomicWriteFile(dir + "/llmc32.bin", std::string(1, '\x08') + EncodeShard32(tokens32));
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const loom::ShardFormat format =
      (data[0] & 1) ? loom::ShardFormat::kRawU16 : loom::ShardFormat::kLlmc;
  const int vocab = (data[0] & 8) ? kLlama3Vocab : kVocabs[(data[0] >> 1) & 3];
  const std::string path = loom::fuzz::WriteScratch("shard.bin", data + 1, size - 1);
  auto shard = loom::TokenShard::Open(path, format, vocab);
  if (!shard.ok()) return 0;
  // The promise the data loader relies on: every id inside the vocabulary.
  for (size_t i = 0; i < (*shard)->size(); ++i) {
    const int32_t t = (*shard)->at(i);
    if (t < 0 || t >= vocab) std::abort();
  }
  return 0;
}
