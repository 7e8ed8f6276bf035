// The main of a fuzz target built without libFuzzer (tests/fuzz/fuzz_target.h): replays the
// corpus and a fixed number of deterministic mutations of each corpus file, so ctest fuzzes
// every reader in bounded time on any compiler, and a failure reproduces exactly.
//
//   <target> CORPUS... [--mutations N] [--seed S]   files or directories of files
//   <target> --write-seeds DIR                      writes the target's seed corpus
//
// Mutations: bit flips, interesting bytes, interesting 32-bit little-endian integers (the
// binary headers are int32 arrays), truncations, runs of 0xff (huge varints), and splices of
// pieces of any corpus file (so the text targets meet each other's tokens).
//
// Bounds: each input must finish within 10 s (SIGALRM: a hang fails); the process may map at
// most 2 GiB more than after its first input (RLIMIT_AS; not under ASan or TSan, whose shadow
// memory needs the address space: there ASAN_OPTIONS=max_allocation_size_mb does it). A crash,
// a hang or an abort writes the input to ./fuzz-crash-<target> and names it.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "runtime/files.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOOM_FUZZ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LOOM_FUZZ_SANITIZED 1
#endif
#endif

namespace {

constexpr unsigned kInputSeconds = 10;

// The input being run, for the signal handler.
const std::string* g_input = nullptr;
char g_crash_path[512] = "fuzz-crash";
char g_what[256] = "";

void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void OnFatalSignal(int sig) {
  // Only async-signal-safe calls here.
  const char* what = sig == SIGALRM ? "fuzz: input ran past 10 s (a hang): " : "fuzz: crash on ";
  WriteAll(2, what, std::strlen(what));
  WriteAll(2, g_what, std::strlen(g_what));
  if (g_input != nullptr) {
    int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      WriteAll(fd, g_input->data(), g_input->size());
      ::close(fd);
      const char* saved = "; the input is in ";
      WriteAll(2, saved, std::strlen(saved));
      WriteAll(2, g_crash_path, std::strlen(g_crash_path));
    }
  }
  WriteAll(2, "\n", 1);
  ::signal(sig == SIGALRM ? SIGABRT : sig, SIG_DFL);
  ::raise(sig == SIGALRM ? SIGABRT : sig);
}

void LimitAddressSpace() {
#ifndef LOOM_FUZZ_SANITIZED
  struct rlimit now;
  if (::getrlimit(RLIMIT_AS, &now) != 0) return;
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0;
  if (f != nullptr && std::fscanf(f, "%ld", &pages) == 1) {
    const rlim_t limit = static_cast<rlim_t>(pages) * 4096 + (rlim_t{2} << 30);
    struct rlimit lim = {limit, now.rlim_max};
    ::setrlimit(RLIMIT_AS, &lim);
  }
  if (f != nullptr) std::fclose(f);
#endif
}

std::string Mutate(const std::string& seed, const std::vector<std::string>& corpus,
                   std::mt19937_64& rng) {
  static const uint8_t kBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '"', '{', '}', ':', '\n'};
  static const int32_t kInts[] = {0,      1,        -1,       2,       255,        256,
                                  1024,   65535,    65536,    1 << 24, 0x7fffffff, INT32_MIN,
                                  -65536, 20240326, 20241128, 20240520};
  std::string in = seed;
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    if (in.empty()) {
      in = corpus[rng() % corpus.size()].substr(0, 64);
      continue;
    }
    const size_t at = rng() % in.size();
    switch (rng() % 7) {
      case 0:
        in[at] = static_cast<char>(in[at] ^ (1 << (rng() % 8)));
        break;
      case 1:
        in[at] = static_cast<char>(kBytes[rng() % sizeof(kBytes)]);
        break;
      case 2: {  // an int32 at an aligned place (header fields) or anywhere
        const int32_t v = kInts[rng() % (sizeof(kInts) / sizeof(kInts[0]))];
        size_t pos = (rng() % 2 == 0) ? at & ~size_t{3} : at;
        if (pos + 4 <= in.size()) std::memcpy(in.data() + pos, &v, 4);
        break;
      }
      case 3:
        in.resize(at);
        break;
      case 4:
        in.insert(at, std::string(1 + rng() % 9, '\xff'));
        break;
      case 5:  // delete a piece
        in.erase(at, 1 + rng() % 16);
        break;
      default: {  // splice a piece of any corpus file
        const std::string& other = corpus[rng() % corpus.size()];
        if (!other.empty()) in.insert(at, other.substr(rng() % other.size(), 1 + rng() % 24));
        break;
      }
    }
  }
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string target = std::filesystem::path(argv[0]).filename().string();
  loom::fuzz::QuietProtobuf();
  if (argc == 3 && std::strcmp(argv[1], "--write-seeds") == 0) {
    std::filesystem::create_directories(argv[2]);
    absl::Status s = loom::fuzz::WriteSeeds(argv[2]);
    if (!s.ok()) std::fprintf(stderr, "%s: %s\n", target.c_str(), s.ToString().c_str());
    return s.ok() ? 0 : 1;
  }
  int mutations = 1000;
  uint64_t seed = 20261206;
  std::vector<std::string> names, corpus;
  auto add = [&](const std::string& path) {
    auto bytes = loom::ReadFile(path);
    if (!bytes.ok()) {
      std::fprintf(stderr, "%s: %s\n", target.c_str(), bytes.status().ToString().c_str());
      std::exit(1);
    }
    names.push_back(path);
    corpus.push_back(*std::move(bytes));
  };
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
      mutations = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::filesystem::is_directory(argv[i])) {
      std::vector<std::string> files;
      for (const auto& e : std::filesystem::directory_iterator(argv[i])) {
        if (e.is_regular_file()) files.push_back(e.path().string());
      }
      std::sort(files.begin(), files.end());  // directory order is not deterministic
      for (const std::string& f : files) add(f);
    } else {
      add(argv[i]);
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr,
                 "usage: %s CORPUS_FILE_OR_DIR... [--mutations N] [--seed S]\n"
                 "       %s --write-seeds DIR\n",
                 target.c_str(), target.c_str());
    return 2;
  }
  std::snprintf(g_crash_path, sizeof(g_crash_path), "fuzz-crash-%s", target.c_str());
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM}) ::signal(sig, OnFatalSignal);

  std::mt19937_64 rng(seed);
  int64_t runs = 0;
  auto run = [&](const std::string& in, size_t file, int m) {
    g_input = &in;
    std::snprintf(g_what, sizeof(g_what), "%s mutation %d (--seed %llu)", names[file].c_str(), m,
                  static_cast<unsigned long long>(seed));
    ::alarm(kInputSeconds);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    ::alarm(0);
    g_input = nullptr;
    ++runs;
  };
  // The first input sets up what the target needs once (MPI, a real checkpoint...), which may
  // map much address space: the limit counts from after it.
  run(corpus[0], 0, -1);
  LimitAddressSpace();
  for (size_t f = 0; f < corpus.size(); ++f) {
    run(corpus[f], f, -1);
    for (int m = 0; m < mutations; ++m) run(Mutate(corpus[f], corpus, rng), f, m);
  }
  std::printf("%s: %lld inputs (%zu corpus files, %d mutations each), no crash\n", target.c_str(),
              static_cast<long long>(runs), corpus.size(), mutations);
  return 0;
}
