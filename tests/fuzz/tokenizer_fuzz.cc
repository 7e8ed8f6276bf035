// Fuzz target: tokenizer files (data/tokenizer.h): the description `loom data prepare` writes
// beside the shards (tokenizer.json, proto/tokenizer.proto as JSON) and the trainer reads to
// decode samples. Any bytes either load or are refused with a Status naming the file. The same
// bytes, read as int32 ids, go through the decoders, which must refuse or replace any id.
//
// To fuzz another tokenizer reader (a Hugging Face tokenizer.json, a SentencePiece model), copy
// this file to tests/fuzz/<name>_fuzz.cc, call that reader on `path`, write its seeds (small
// real files) in WriteSeeds, and add one loom_add_fuzz_target line in tests/fuzz/CMakeLists.txt.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "runtime/files.h"
#include "tests/fuzz/fuzz_target.h"

namespace loom::fuzz {

absl::Status WriteSeeds(const std::string& dir) {
  const std::string json = ByteTokenizer().DescriptionJson();
  if (absl::Status s = AtomicWriteFile(dir + "/byte.json", json); !s.ok()) return s;
  // The same in the other spellings proto3 JSON accepts (camelCase names, quoted numbers).
  return AtomicWriteFile(dir + "/byte_spelled.json",
                         "{ \"type\": \"byte\", \"vocabSize\": \"257\", \"eot\": 256 }\n");
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loom::fuzz::QuietProtobuf();
  const std::string path = loom::fuzz::WriteScratch("tokenizer.json", data, size);
  auto tok = loom::LoadTokenizer(path);
  loom::ByteTokenizer t = tok.ok() ? *tok : loom::ByteTokenizer();
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  auto text = t.Decode(ids);
  (void)t.DecodeForDisplay(ids);
  // Decode is Encode's exact inverse.
  if (text.ok() && t.Encode(*text).size() != ids.size()) std::abort();
  return 0;
}
