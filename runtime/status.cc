#include "runtime/status.h"

namespace loom {

absl::Status CallError(absl::StatusCode code, const char* call, const char* file, int line,
                       const std::string& detail) {
  return absl::Status(code, absl::StrCat(call, " failed at ", file, ":", line, ": ", detail));
}

}  // namespace loom
