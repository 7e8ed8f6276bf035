#!/usr/bin/env bash
# Installs what loom's build needs from Debian's packages, only what is missing, and says what
# it found. Runs `apt-get update` only when something must be installed. Re-running it on a
# ready machine takes a second or two.
set -euo pipefail

PKGS=(cmake g++ make pkg-config git libopenmpi-dev openmpi-bin libprotobuf-dev protobuf-compiler
      libabsl-dev libopenblas-openmp-dev libgtest-dev libgmock-dev python3
      libsentencepiece-dev clang libomp-dev libclang-rt-dev)
# libsentencepiece: SentencePiece .model tokenizers (optional in CMake). clang, its OpenMP
# runtime (libomp, with the Archer tool for TSan) and its sanitizer and libFuzzer runtimes: the
# sanitizer stages of scripts/test.sh (scripts/sanitize.sh).
# Optional: PyTorch (fixture generators, side-by-side benchmark) with LOOM_SETUP_TORCH=1.
if [[ "${LOOM_SETUP_TORCH:-0}" == "1" ]]; then PKGS+=(python3-torch python3-numpy); fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all build packages present"
fi

# The TensorBoard event-file test reads our files back with the real `tensorboard` package
# (PyPI), for the python3 that CMake will find on PATH.
if command -v python3 >/dev/null; then
  if python3 -c "import tensorboard" 2>/dev/null; then
    echo "setup: python3 has tensorboard"
  elif python3 -m pip install --quiet --disable-pip-version-check tensorboard >/dev/null 2>&1 ||
       python3 -m pip install --quiet --disable-pip-version-check --break-system-packages tensorboard >/dev/null 2>&1; then
    echo "setup: installed tensorboard for $(command -v python3)"
  else
    echo "setup: could not pip-install tensorboard: its event-file test will be skipped"
  fi
fi

# The checkpoint export test reads `loom export --format safetensors` files back with the real
# `safetensors` package (PyPI; with numpy), the same way.
if command -v python3 >/dev/null; then
  if python3 -c "import safetensors.numpy" 2>/dev/null; then
    echo "setup: python3 has safetensors"
  elif python3 -m pip install --quiet --disable-pip-version-check safetensors numpy >/dev/null 2>&1 ||
       python3 -m pip install --quiet --disable-pip-version-check --break-system-packages safetensors numpy >/dev/null 2>&1; then
    echo "setup: installed safetensors for $(command -v python3)"
  else
    echo "setup: could not pip-install safetensors: the safetensors export test will be skipped"
  fi
fi

# The Hugging Face export test reads `loom export --format hf` back with the real `transformers`
# (PyPI), on the python3 that has PyTorch (Debian's python3-torch 1.13 pairs with
# transformers < 4.45). Without one, that test is skipped.
for py in python3 /usr/bin/python3; do
  command -v "$py" >/dev/null && "$py" -c "import torch" 2>/dev/null || continue
  if "$py" -c "import transformers" 2>/dev/null; then
    echo "setup: $py has transformers"
  elif "$py" -m pip install --quiet --disable-pip-version-check "transformers<4.45" >/dev/null 2>&1 ||
       "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages "transformers<4.45" >/dev/null 2>&1; then
    echo "setup: installed transformers for $py"
  else
    echo "setup: could not pip-install transformers: the Hugging Face export test will be skipped"
  fi
  break
done

cuda_home="${CUDA_HOME:-/usr/local/cuda}"
if [[ -x "$cuda_home/bin/nvcc" ]]; then
  echo "setup: CUDA toolkit found at $cuda_home ($("$cuda_home/bin/nvcc" --version | grep -o 'release [0-9.]*')): the CUDA backend will be built (sm_90 by default)"
else
  echo "setup: no CUDA toolkit (looked in $cuda_home): CPU-only build"
fi
echo "setup: $(cmake --version | head -1), $(g++ --version | head -1), $(mpirun --version 2>/dev/null | head -1)"
