// The shared harness of loom's fuzz targets (issue 19: every file loom reads either loads or is
// refused with a Status - never a crash, a hang or an unbounded allocation).
//
// A target is one file, tests/fuzz/<name>_fuzz.cc, registered with one line in
// tests/fuzz/CMakeLists.txt (loom_add_fuzz_target, cmake/LoomFuzz.cmake). It defines
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
//       libFuzzer's entry point: hand the bytes to the reader as its file (WriteScratch) and
//       use whatever it returns; return 0.
//   absl::Status loom::fuzz::WriteSeeds(const std::string& dir);
//       writes the seed corpus, made with loom's own writers, into `dir`
//       (`<name> --write-seeds tests/fuzz/corpus/<name>`; the files are committed).
// Built with clang and LOOM_LIBFUZZER=ON the target is a libFuzzer binary; otherwise
// tests/fuzz/fuzz_main.cc is its main: it replays the corpus and a fixed number of
// deterministic mutations of it, so the ordinary suite fuzzes too, in bounded time.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "google/protobuf/stubs/logging.h"

namespace loom::fuzz {

// Defined by each target.
absl::Status WriteSeeds(const std::string& dir);

// A directory of this process's own (made once, removed at exit), for the files the inputs
// become.
inline const std::string& ScratchDir() {
  static const std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "loom_fuzz_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    static std::string removed_at_exit;
    removed_at_exit = tmpl;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(removed_at_exit, ec);
    });
    return tmpl;
  }();
  return dir;
}

// Writes the input as the file `name` in the scratch dir and returns its path. Not fsynced:
// thousands of inputs a second.
inline std::string WriteScratch(const std::string& name, const uint8_t* data, size_t size) {
  std::string path = ScratchDir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::abort();
  }
  return path;
}

// Malformed input is the point: protobuf's complaints about it are noise.
inline void QuietProtobuf() {
  static const bool done = [] {
    google::protobuf::SetLogHandler(
        [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    return true;
  }();
  (void)done;
}

}  // namespace loom::fuzz
