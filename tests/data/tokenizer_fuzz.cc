// A fuzz target for the tokenizer files loom reads (issue 19): any bytes as a tokenizer file
// (byte description, Hugging Face tokenizer.json, SentencePiece .model) either load or are
// refused with a Status - never a crash, a hang or an unbounded allocation - and a tokenizer
// that loads encodes text (any bytes) into ids below its vocab_size that decode again.
// LLVMFuzzerTestOneInput is libFuzzer's entry point (clang -fsanitize=fuzzer); built with any
// compiler, the main below replays the seed corpus (the fixtures of tests/fixtures/tokenizer
// and tests/data/fuzz) and deterministic mutations of each seed, so ctest runs it in bounded
// time (the same scheme as tests/checkpoint/manifest_fuzz.cc).
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "runtime/files.h"

namespace {

const std::string& Path() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/loom_tokenizer_fuzz_XXXXXX";
    const char* dir = ::mkdtemp(tmpl);
    if (dir == nullptr) std::abort();
    return std::string(dir) + "/tokenizer";
  }();
  return path;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

// Bytes that matter to JSON and to protobuf varints, for the mutations.
constexpr char kMutationBytes[] = "\"\\{}[],:0-9e \x80\xff\x01";
constexpr char kBadBytes[] = "bad \xff\xfe\xed\xa0\x80 bytes\0nul";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::FILE* f = std::fopen(Path().c_str(), "wb");
    if (f == nullptr || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  }
  auto tok = loom::LoadTokenizer(Path());
  if (!tok.ok()) return 0;
  const loom::Tokenizer& t = **tok;
  Check(t.vocab_size() > 0 && t.eot() >= 0 && t.eot() < t.vocab_size(), "eot in the vocabulary");
  Check(t.bos() < t.vocab_size(), "bos in the vocabulary");
  // The input itself as text too: whatever the file holds, encoding it must be safe.
  const std::string texts[] = {
      "Hello, world! it's 2026 \n\n  你好 😀 <|endoftext|><s></s>'S ab aab b",
      std::string(kBadBytes, sizeof(kBadBytes) - 1),
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

#ifndef LOOM_LIBFUZZER
// Replays the corpus and mutations of it: tokenizer_fuzz CORPUS_FILE... [--mutations N]
int main(int argc, char** argv) {
  int mutations = 600;
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
      mutations = std::atoi(argv[++i]);
    } else {
      auto bytes = loom::ReadFile(argv[i]);
      if (!bytes.ok()) {
        std::fprintf(stderr, "%s\n", bytes.status().ToString().c_str());
        return 1;
      }
      seeds.push_back(*bytes);
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "usage: tokenizer_fuzz CORPUS_FILE... [--mutations N]\n");
    return 2;
  }
  // An unbounded allocation shows as a failure (std::bad_alloc), not as a machine out of
  // memory: at most 2 GiB more than the start took.
  {
    struct rlimit now;
    if (::getrlimit(RLIMIT_AS, &now) == 0) {
      FILE* f = std::fopen("/proc/self/statm", "r");
      long pages = 0;
      if (f != nullptr && std::fscanf(f, "%ld", &pages) == 1) {
        const rlim_t limit = static_cast<rlim_t>(pages) * 4096 + (rlim_t{2} << 30);
        struct rlimit lim = {limit, now.rlim_max};
        ::setrlimit(RLIMIT_AS, &lim);
      }
      if (f != nullptr) std::fclose(f);
    }
  }
  std::mt19937_64 rng(20261206);
  int64_t runs = 0;
  for (const std::string& seed : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(seed.data()), seed.size());
    ++runs;
    for (int m = 0; m < mutations; ++m) {
      std::string in = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !in.empty(); ++e) {
        const size_t at = rng() % in.size();
        switch (rng() % 6) {
          case 0:
            in[at] = static_cast<char>(in[at] ^ (1 << (rng() % 8)));
            break;
          case 1:  // bytes that matter to JSON and to protobuf varints
            in[at] = kMutationBytes[rng() % (sizeof(kMutationBytes) - 1)];
            break;
          case 2:
            in.resize(at);
            break;
          case 3: {  // splice in a piece of the seed from elsewhere
            const size_t from = rng() % seed.size();
            in.insert(at, seed.substr(from, 1 + rng() % 64));
            break;
          }
          case 4:  // digits: ids far out of range, huge counts
            in.insert(at, std::to_string(rng() % 3 == 0 ? -1 : static_cast<int64_t>(rng() >> 20)));
            break;
          default:
            in.erase(at, 1 + rng() % 16);
            break;
        }
      }
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
      ++runs;
    }
  }
  std::printf("tokenizer_fuzz: %lld inputs, no crash\n", static_cast<long long>(runs));
  ::unlink(Path().c_str());
  return 0;
}
#endif  // LOOM_LIBFUZZER
