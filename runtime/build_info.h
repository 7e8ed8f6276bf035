// The git commit and build type loom was built from, for `loom version` and benchmark headers.
// Defined in one source file only, so a new commit recompiles that file, not the whole tree.
#pragma once

namespace loom {

const char* BuildGitHash();
const char* BuildType();

}  // namespace loom
