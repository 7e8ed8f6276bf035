#include "runtime/build_info.h"

namespace loom {

const char* BuildGitHash() { return LOOM_GIT_HASH; }
const char* BuildType() { return LOOM_BUILD_TYPE; }

}  // namespace loom
