// A fuzz target for checkpoint manifests (issue 19): any bytes as <step>/manifest.pb, beside a
// real data file, either open and verify or are refused with a Status - never a crash, a hang
// or an allocation beyond the checkpoint's size. LLVMFuzzerTestOneInput is libFuzzer's entry
// point (clang -fsanitize=fuzzer); built with any compiler, the main below replays the seed
// corpus (tests/checkpoint/fuzz/) and a fixed number of deterministic mutations of each seed
// (bit flips, byte stores, truncations, splices), so ctest runs it in bounded time.
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "google/protobuf/stubs/logging.h"
#include "runtime/files.h"
#include "tests/checkpoint/checkpoint_testing.h"

namespace {

std::string& StepDir() {
  static std::string dir;
  return dir;
}

// A real checkpoint (step 1 of the two-tensor state), whose data file the inputs may name.
void Setup() {
  if (!StepDir().empty()) return;
  // Malformed strings are the point here: protobuf's complaints about them are noise.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  char tmpl[] = "/tmp/loom_manifest_fuzz_XXXXXX";
  const char* root = ::mkdtemp(tmpl);
  if (root == nullptr) std::abort();
  loom::testing::State s = loom::testing::MakeState(1);
  auto saved = loom::testing::SaveStep(absl::StrCat(root, "/ckpt"), s, 1);
  if (!saved.ok()) {
    std::fprintf(stderr, "manifest_fuzz: setup save failed: %s\n",
                 saved.status().ToString().c_str());
    std::abort();
  }
  StepDir() = absl::StrCat(root, "/ckpt/step_00000001");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Setup();
  const std::string dir = StepDir();
  {
    // Not fsynced: thousands of inputs a second.
    std::FILE* f = std::fopen((dir + "/manifest.pb").c_str(), "wb");
    if (f == nullptr || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  }
  auto reader = loom::CheckpointReader::Open(dir);
  if (!reader.ok()) return 0;
  (void)(*reader)->VerifyAll();
  // As `loom ckpt verify` does: every tensor and kind read whole.
  for (const loom::CheckpointTensor& t : (*reader)->manifest().tensors()) {
    loom::TensorBox box;
    for (int64_t d : t.global_shape()) {
      box.offset.push_back(0);
      box.extent.push_back(d);
    }
    for (loom::CheckpointKind kind : {loom::WEIGHTS, loom::MASTER, loom::ADAM_M, loom::ADAM_V}) {
      if (!(*reader)->Has(t.name(), kind)) continue;
      std::vector<float> buf(box.numel());
      (void)(*reader)->ReadBox(t.name(), kind, box, buf.data());
    }
  }
  return 0;
}

#ifndef LOOM_LIBFUZZER
// Replays the corpus and mutations of it: manifest_fuzz CORPUS_FILE... [--mutations N]
int main(int argc, char** argv) {
  // --write-seeds DIR: the corpus, from a real save: the manifest as saved, one naming a file
  // outside the step directory, one claiming a tensor of 1e15 rows.
  if (argc == 3 && std::strcmp(argv[1], "--write-seeds") == 0) {
    Setup();
    auto bytes = loom::ReadFile(StepDir() + "/manifest.pb");
    loom::CheckpointManifest m;
    if (!bytes.ok() || !m.ParseFromString(*bytes)) return 1;
    loom::CheckpointManifest escape = m, huge = m;
    escape.mutable_files(0)->set_name("../../../../../../etc/passwd");
    for (auto& sl : *escape.mutable_slices()) sl.set_file("../../../../../../etc/passwd");
    huge.mutable_tensors(0)->set_global_shape(0, 1'000'000'000'000'000);
    const std::string dir = argv[2];
    bool ok = loom::AtomicWriteFile(dir + "/saved.pb", *bytes).ok();
    ok = ok && loom::AtomicWriteFile(dir + "/escape.pb", escape.SerializeAsString()).ok();
    ok = ok && loom::AtomicWriteFile(dir + "/huge.pb", huge.SerializeAsString()).ok();
    return ok ? 0 : 1;
  }
  int mutations = 2000;
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
    std::fprintf(stderr, "usage: manifest_fuzz CORPUS_FILE... [--mutations N]\n");
    return 2;
  }
  Setup();  // MPI and the first save before the limit: they map much address space
  // An unbounded allocation shows as a failure (std::bad_alloc), not as a machine out of
  // memory: at most 2 GiB more than the setup took.
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
        switch (rng() % 5) {
          case 0:
            in[at] = static_cast<char>(in[at] ^ (1 << (rng() % 8)));
            break;
          case 1:  // an interesting byte: varint continuations, big and negative numbers
            in[at] =
                static_cast<char>(std::vector<uint8_t>{0x00, 0x01, 0x7f, 0x80, 0xff}[rng() % 5]);
            break;
          case 2:
            in.resize(at);
            break;
          case 3:  // a run of 0xff: huge varints (shapes, offsets, lengths)
            in.insert(at, std::string(1 + rng() % 9, '\xff'));
            break;
          default:  // splice a piece of the seed elsewhere
            in.insert(at, seed.substr(rng() % seed.size(), 1 + rng() % 16));
            break;
        }
      }
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
      ++runs;
    }
  }
  std::printf("manifest_fuzz: %lld inputs, no crash\n", static_cast<long long>(runs));
  return 0;
}
#endif
