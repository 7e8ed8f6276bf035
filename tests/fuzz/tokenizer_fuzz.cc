// Fuzz target: tokenizer files (data/tokenizer.h, LoadTokenizer): the byte tokenizer's
// description `loom data prepare` writes beside the shards (tokenizer.json, proto/tokenizer.proto
// as JSON), a Hugging Face tokenizer.json (byte-level BPE) and a SentencePiece .model. Any bytes
// either load or are refused with a Status; a tokenizer that loads encodes any text into ids
// below its vocab_size that decode again, and decodes any ids (out-of-range ones refused or
// replaced), never a crash, a hang or an unbounded allocation.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "runtime/files.h"
#include "tests/fuzz/fuzz_target.h"

namespace loom::fuzz {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

constexpr char kBadBytes[] = "bad \xff\xfe\xed\xa0\x80 bytes\0nul";

}  // namespace

absl::Status WriteSeeds(const std::string& dir) {
  const std::string json = ByteTokenizer().DescriptionJson();
  if (absl::Status s = AtomicWriteFile(dir + "/byte.json", json); !s.ok()) return s;
  // tiny.tokenizer.json (a byte-level BPE) and sp.model (tests/fixtures/tokenizer) are
  // committed beside these: loom writes neither format.
  // The same in the other spellings proto3 JSON accepts (camelCase names, quoted numbers).
  return AtomicWriteFile(dir + "/byte_spelled.json",
                         "{ \"type\": \"byte\", \"vocabSize\": \"257\", \"eot\": 256 }\n");
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loom::fuzz::QuietProtobuf();
  // No extension: LoadTokenizer tells the formats apart by their contents.
  const std::string path = loom::fuzz::WriteScratch("tokenizer", data, size);
  auto tok = loom::LoadTokenizer(path);
  if (!tok.ok()) return 0;
  const loom::Tokenizer& t = **tok;
  using loom::fuzz::Check;
  Check(t.vocab_size() > 0 && t.eot() >= 0 && t.eot() < t.vocab_size(), "eot in the vocabulary");
  Check(t.bos() < t.vocab_size(), "bos in the vocabulary");
  // The input itself as text too: whatever the file holds, encoding it must be safe.
  const std::string texts[] = {
      "Hello, world! it's 2026 \n\n  \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 <|endoftext|><s></s>'S ab",
      std::string(loom::fuzz::kBadBytes, sizeof(loom::fuzz::kBadBytes) - 1),
      std::string(reinterpret_cast<const char*>(data), std::min<size_t>(size, 512)),
  };
  for (const std::string& text : texts) {
    const std::vector<int32_t> ids = t.Encode(text);
    for (int32_t id : ids) Check(id >= 0 && id < t.vocab_size(), "encoded id in the vocabulary");
    if (t.type() != "byte") Check(t.Decode(ids).ok(), "encoded ids decode");
    (void)t.DecodeForDisplay(ids);
  }
  (void)t.DecodeForDisplay({-1, 0, 1, t.vocab_size() - 1, t.vocab_size(), 1 << 30});
  (void)t.Decode({0, t.vocab_size()});
  (void)t.TokenId("<|endoftext|>");
  (void)t.TokenId("");
  return 0;
}
