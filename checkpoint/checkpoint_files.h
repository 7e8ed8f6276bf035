// Names and small helpers shared by checkpoint.cc (saving) and checkpoint_reader.cc (finding
// and loading): the file names inside a step directory, and what makes a step directory
// complete. Internal to checkpoint/.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/fs.h"

namespace loom::checkpoint_internal {

inline constexpr char kManifest[] = "manifest.pb";
constexpr char kManifestText[] = "manifest.txt";
constexpr char kLatest[] = "latest";

inline std::string RankFileName(int rank) { return absl::StrFormat("rank_%05d.bin", rank); }
inline std::string RankSlicesName(int rank) { return absl::StrFormat("rank_%05d.slices.pb", rank); }

// A final step directory's step ("step_00000042" -> 42), or -1 for any other name.
inline int64_t StepOfDirName(const std::string& name) {
  if (name.size() != 13 || name.rfind("step_", 0) != 0) return -1;
  int64_t step = 0;
  if (!absl::SimpleAtoi(name.substr(5), &step)) return -1;
  return step;
}

inline bool HasManifest(const std::string& dir) {
  auto info = Fs().Stat(absl::StrCat(dir, "/", kManifest));
  return info.ok() && info->is_regular;
}

}  // namespace loom::checkpoint_internal
