#include "runtime/memory_info.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/device.h"

namespace loom {
namespace {

// A v1 "no limit" is a page-rounded INT64_MAX; anything this large means none.
constexpr int64_t kNoLimit = int64_t{1} << 62;

bool ReadSmallFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream s;
  s << in.rdbuf();
  *out = s.str();
  return true;
}

// The cgroup path of this process for a v1 controller ("memory") or v2 (controller ""), from
// /proc/self/cgroup lines "id:controllers:path".
std::string OwnCgroupPath(const std::string& controller) {
  std::string text;
  if (!ReadSmallFile("/proc/self/cgroup", &text)) return "";
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (controller.empty() ? (parts[0] == "0" && parts[1].empty())
                           : absl::StrContains(parts[1], controller)) {
      return parts[2];
    }
  }
  return "";
}

// Directories of the cgroup `path` under `mount` and of each ancestor, deepest first. In a
// container the mount is often the process's own cgroup already, so the mount itself is last.
std::vector<std::string> CgroupDirs(const std::string& mount, std::string path) {
  std::vector<std::string> dirs;
  while (!path.empty() && path != "/") {
    dirs.push_back(mount + path);
    path = path.substr(0, path.rfind('/'));
  }
  dirs.push_back(mount);
  return dirs;
}

struct Candidate {
  int64_t bytes;
  std::string source;
};

// The smallest (limit - usage) over the cgroup directories that have both files.
void AddCgroupLimits(const std::vector<std::string>& dirs, const char* limit_file,
                     const char* usage_file, const char* version, std::vector<Candidate>* out) {
  for (const std::string& dir : dirs) {
    std::string limit_text, usage_text;
    if (!ReadSmallFile(dir + "/" + limit_file, &limit_text) ||
        !ReadSmallFile(dir + "/" + usage_file, &usage_text)) {
      continue;
    }
    auto limit = ParseCgroupBytes(limit_text);
    auto usage = ParseCgroupBytes(usage_text);
    if (!limit.ok() || !usage.ok() || *limit < 0 || *limit >= kNoLimit || *usage < 0) continue;
    out->push_back({std::max<int64_t>(0, *limit - *usage),
                    absl::StrCat("cgroup ", version, " ", dir, "/", limit_file, " (", *limit,
                                 ") - ", usage_file, " (", *usage, ")")});
  }
}

}  // namespace

absl::StatusOr<int64_t> ParseCgroupBytes(const std::string& text) {
  const std::string t(absl::StripAsciiWhitespace(text));
  if (t == "max") return -1;
  int64_t v = 0;
  if (!absl::SimpleAtoi(t, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("not a byte count: '", t, "'"));
  }
  return v;
}

absl::StatusOr<int64_t> MemoryLimitFromEnv() {
  const char* env = std::getenv(kMemoryLimitEnv);
  if (env == nullptr || *env == '\0') return -1;
  std::string v(absl::StripAsciiWhitespace(env));
  int64_t scale = 1;
  if (!v.empty()) {
    switch (absl::ascii_toupper(v.back())) {
      case 'K':
        scale = int64_t{1} << 10;
        break;
      case 'M':
        scale = int64_t{1} << 20;
        break;
      case 'G':
        scale = int64_t{1} << 30;
        break;
      case 'T':
        scale = int64_t{1} << 40;
        break;
      default:
        break;
    }
    if (scale != 1) v.pop_back();
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < 0 || n > (int64_t{1} << 62) / scale) {
    return absl::InvalidArgumentError(absl::StrCat(
        kMemoryLimitEnv, "='", env, "' is not a byte count (an integer, optionally K/M/G/T)"));
  }
  return n * scale;
}

absl::StatusOr<AvailableMemory> HostAvailableMemory() {
  std::vector<Candidate> candidates;
  std::string meminfo;
  if (ReadSmallFile("/proc/meminfo", &meminfo)) {
    for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
      if (!absl::ConsumePrefix(&line, "MemAvailable:")) continue;
      line = absl::StripAsciiWhitespace(line);
      absl::ConsumeSuffix(&line, "kB");
      int64_t kib = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) {
        candidates.push_back({kib * 1024, "/proc/meminfo MemAvailable"});
      }
    }
  }
  AddCgroupLimits(CgroupDirs("/sys/fs/cgroup", OwnCgroupPath("")), "memory.max", "memory.current",
                  "v2", &candidates);
  AddCgroupLimits(CgroupDirs("/sys/fs/cgroup/unified", OwnCgroupPath("")), "memory.max",
                  "memory.current", "v2", &candidates);
  AddCgroupLimits(CgroupDirs("/sys/fs/cgroup/memory", OwnCgroupPath("memory")),
                  "memory.limit_in_bytes", "memory.usage_in_bytes", "v1", &candidates);
  auto env = MemoryLimitFromEnv();
  if (!env.ok()) return env.status();
  if (*env >= 0) candidates.push_back({*env, kMemoryLimitEnv});
  if (candidates.empty()) {
    return absl::UnavailableError(
        "cannot tell how much host memory is available (no /proc/meminfo MemAvailable, no "
        "cgroup memory limit)");
  }
  const Candidate& best =
      *std::min_element(candidates.begin(), candidates.end(),
                        [](const Candidate& a, const Candidate& b) { return a.bytes < b.bytes; });
  return AvailableMemory{best.bytes, best.source};
}

absl::StatusOr<AvailableMemory> CudaAvailableMemory(int index) {
  auto device = CudaDevice(index);
  if (!device.ok()) return device.status();
  AvailableMemory m{static_cast<int64_t>((*device)->GetMemoryInfo().free_bytes),
                    absl::StrCat("cudaMemGetInfo free bytes of ", (*device)->Name())};
  auto env = MemoryLimitFromEnv();
  if (!env.ok()) return env.status();
  if (*env >= 0 && *env < m.bytes) m = AvailableMemory{*env, kMemoryLimitEnv};
  return m;
}

}  // namespace loom
