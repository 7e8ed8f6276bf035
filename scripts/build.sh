#!/usr/bin/env bash
# Configures and builds loom (Release) into build/. With a CUDA toolkit at $CUDA_HOME or
# /usr/local/cuda the CUDA backend is included; LOOM_CUDA=OFF forces a CPU-only build.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
args=(-DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DLOOM_CUDA="${LOOM_CUDA:-AUTO}")
if [[ -x "$cuda_home/bin/nvcc" && "${LOOM_CUDA:-AUTO}" != "OFF" ]]; then
  args+=(-DCMAKE_CUDA_COMPILER="$cuda_home/bin/nvcc" -DLOOM_CUDA_ARCHS="${LOOM_CUDA_ARCHS:-90}")
fi
# ccache, where installed, makes rebuilds and a second checkout's build (a git worktree) cheap;
# CI's clean clone builds the same either way.
if command -v ccache >/dev/null && [[ "${LOOM_CCACHE:-1}" != "0" ]]; then
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" "${args[@]}" >/dev/null
# One job more than cores: a link or an archive step (one thread, waiting on the disk) then
# leaves no core idle; GCC -O3 and nvcc (~0.4 GiB each) fit three at a time in memory.
cmake --build "$BUILD_DIR" -j "${JOBS:-$(( $(nproc) + 1 ))}" "$@"
