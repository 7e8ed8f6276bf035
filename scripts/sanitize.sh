#!/usr/bin/env bash
# The sanitizer stages of CI (scripts/test.sh runs `scripts/sanitize.sh all` after the ordinary
# suite; LOOM_SANITIZERS=0 skips them for a quick local run). Both builds are CPU-only, with
# line tables for the reports: ASan -O0 (loom_ops -O1, cmake/LoomSanitize.cmake), TSan -O1.
# docs/testing.md says what each runs and how long it takes.
#
#   scripts/sanitize.sh [all | asan | tsan | covered] [REGEX | ctest args...]
#
#   asan  build-asan: AddressSanitizer + UndefinedBehaviorSanitizer, every CPU test but those
#         labelled release_only (ctest -LE '^(gpu|release_only)$'), and with clang the fuzz
#         targets as libFuzzer binaries, each run for LOOM_FUZZ_SECONDS (10) from its
#         committed corpus (without clang: the deterministic replay of the ordinary build,
#         under ASan).
#   covered  configures build-asan (no build) and prints the names of the tests the asan
#         stage runs, but the fuzz targets (the ordinary stage runs their deterministic replay
#         too): scripts/test.sh leaves exactly these out of the ordinary build's ctest.
#   tsan  build-tsan: ThreadSanitizer, only the targets of the threaded tests (TSAN_TESTS
#         below), every test at 2 OpenMP threads (cmake/LoomTesting.cmake). Needs clang: its
#         OpenMP runtime (libomp) with the Archer tool (OMP_TOOL_LIBRARIES=libarcher.so) tells
#         TSan about OpenMP's barriers and task handoffs; GCC's libgomp is not instrumented and
#         every parallel region would be reported as a race. scripts/tsan.supp holds the few
#         suppressions left (each says why). Skipped, saying so, without clang.
#   A REGEX (or ctest arguments) narrows the tests: scripts/sanitize.sh asan 'manifest|faults'.
# Leaks are not checked (MPI and OpenBLAS keep their allocations until exit).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-all}
shift || true
case $mode in
  address,undefined) mode=asan ;;
  thread) mode=tsan ;;
  all | asan | tsan | covered | build_tsan) ;;
  *) echo "usage: scripts/sanitize.sh [all | asan | tsan | covered] [REGEX | ctest args...]" >&2; exit 2 ;;
esac
ctest_args=("$@")
if ((${#ctest_args[@]})) && [[ ${ctest_args[0]} != -* ]]; then ctest_args=(-R "${ctest_args[@]}"); fi

# The threaded parts: OpenMP ops at 2 threads (ops_test, threads_test.cc among them), the
# test device's stream thread (runtime_test, device communicators), the gradient reducer's
# progress thread overlapping the backward (grad_reducer tests), the async checkpoint writer,
# and the watchdog's roll call and deadlines. None needs the trainer or the launcher, so the
# build stops at loom_parallel and loom_checkpoint (the trainer's own threads are these).
TSAN_TESTS='^(ops_test|runtime_test|grad_reducer_test|grad_reducer_test_np3|grad_reducer_order_test|checkpoint_async_test|checkpoint_faults_test|roll_call_test|comm_deadline_test|device_communicator_test|data_test)$'
TSAN_TARGETS=(ops_test runtime_test grad_reducer_test grad_reducer_order_test
              checkpoint_async_test checkpoint_faults_test roll_call_main
              comm_deadline_main device_communicator_test data_test)

have_clang=0
command -v clang++ >/dev/null && command -v clang >/dev/null && have_clang=1
# One job more than cores: a link or an archive step (single-threaded, waiting on the disk)
# then leaves no core idle; the compilers' memory (clang -O0 + ASan <1 GiB each) allows it.
jobs=${JOBS:-$(( $(nproc) + 1 ))}
# The tests the ASan stage leaves to the ordinary (optimized) build: GPU tests are not even
# registered here, release_only ones are too slow sanitized for what ASan adds.
ASAN_EXCLUDE_LABELS='^(gpu|release_only)$'

configure() {  # DIR SANITIZERS OPT [more cmake args]
  local dir=$1 san=$2 opt=$3
  shift 3
  local args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_CUDA=OFF -DLOOM_SANITIZE="$san" "$@")
  if ((have_clang)); then
    args+=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
           "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$opt -gline-tables-only"
           "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$opt -gline-tables-only")
  else
    args+=("-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$opt -g1" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$opt -g1")
  fi
  if command -v ccache >/dev/null && [[ "${LOOM_CCACHE:-1}" != "0" ]]; then
    args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S . -B "$dir" "${args[@]}" >/dev/null
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# abort_on_error: a report ends the process with SIGABRT, which mpirun and ctest see as a
# failure. max_allocation_size_mb: an allocation above 4 GiB is a bug on this suite's tiny
# models (and the fuzz replay's bound on an "unbounded allocation" under ASan).
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:max_allocation_size_mb=4096
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1

configure_asan() {
  local fuzz=()
  # 10 s: a run from the committed corpus (fixed seed) reaches 99-100% of the coverage 20 s
  # reach (docs/testing.md); LOOM_FUZZ_SECONDS=300 fuzzes longer by hand.
  ((have_clang)) && fuzz=(-DLOOM_LIBFUZZER=ON -DLOOM_FUZZ_SECONDS="${LOOM_FUZZ_SECONDS:-10}")
  # -O0: the whole suite must build within CI's budget, and a sanitized file's code generation
  # at -O1 takes as long as parsing its headers (loom_ops, where the tests compute, stays -O1).
  configure build-asan address,undefined -O0 "${fuzz[@]}"
}

run_asan() {
  local start=$(date +%s)
  configure_asan
  cmake --build build-asan -j "$jobs"
  local built=$(date +%s)
  echo "sanitize.sh: asan build took $((built - start))s"
  # `all`: the TSan build runs beside the ASan tests at the lowest priority (nice 19), on the
  # CPU they leave idle: many of them wait most of their time (a stall deadline, a rank killed
  # by a signal, a roll call's timeout) with both ctest slots held by one 2-rank test. At nice
  # 19 it takes ~1.5% of a core a test wants, so the tests' timings are as without it.
  if [[ ${1:-} == overlap_tsan ]] && ((have_clang)); then
    tsan_started=$(date +%s)
    mkdir -p build-tsan
    setsid bash -c 'echo $$ >build-tsan/background.pgid; exec nice -n 19 bash "$0" build_tsan' \
      "$root/scripts/sanitize.sh" \
      >build-tsan/background.log 2>&1 &
    tsan_pid=$!
  fi
  # A second try for a failed test: a few tests check timings (a stall deadline, a progress
  # thread's overlap) that 3-10x slower sanitized code on a loaded machine can miss once; a
  # memory error or undefined behaviour fails both tries. (TSan: no retry, a race may show once.)
  (cd build-asan && ctest --output-on-failure -j "${TEST_JOBS:-2}" -LE "$ASAN_EXCLUDE_LABELS" --repeat until-pass:2 "${ctest_args[@]}")
  echo "sanitize.sh: asan tests took $(($(date +%s) - built))s"
}

build_tsan() {
  configure build-tsan thread -O1
  cmake --build build-tsan -j "$jobs" --target "${TSAN_TARGETS[@]}"
}

# A background TSan build (run_asan overlap_tsan) ends with this script: killed on a failure.
tsan_pid=
stop_background_build() {
  if [[ -n $tsan_pid ]] && kill -0 "$tsan_pid" 2>/dev/null; then
    kill -- "-$(cat build-tsan/background.pgid 2>/dev/null || echo "$tsan_pid")" 2>/dev/null || true
  fi
  rm -f build-tsan/background.pgid
}
trap stop_background_build EXIT

run_tsan() {
  if ((!have_clang)); then
    echo "sanitize.sh: tsan skipped: it needs clang (libomp + Archer; scripts/setup.sh installs it)"
    return 0
  fi
  local start=$(date +%s)
  if [[ -n $tsan_pid ]]; then
    # Built beside the ASan tests: wait for what is left of it.
    start=$tsan_started
    wait "$tsan_pid" || { tail -40 build-tsan/background.log; echo "sanitize.sh: tsan build failed (build-tsan/background.log)" >&2; return 1; }
    tsan_pid=
    echo "sanitize.sh: tsan build (beside the asan tests, nice 19) ended $(($(date +%s) - start))s after it began"
  else
    build_tsan
  fi
  local built=$(date +%s)
  echo "sanitize.sh: tsan build took $((built - start))s"
  local archer
  archer="$(dirname "$(clang++ -print-file-name=libomp.so)")/libarcher.so"
  [[ -f $archer ]] || archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | tail -1)
  [[ -n $archer && -f $archer ]] || { echo "sanitize.sh: libarcher.so not found (libomp-dev)" >&2; return 1; }
  local args=("${ctest_args[@]}")
  ((${#args[@]})) || args=(-R "$TSAN_TESTS")
  # report_signal_unsafe=0: Open MPI's own signal handlers allocate; reporting that from
  # inside the handler deadlocked TSan (grad_reducer_test hung instead of failing).
  (cd build-tsan &&
   OMP_TOOL_LIBRARIES=$archer \
   TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0:suppressions=$root/scripts/tsan.supp" \
   ctest --output-on-failure -j "${TEST_JOBS:-2}" "${args[@]}")
  echo "sanitize.sh: tsan tests took $(($(date +%s) - built))s"
}

list_covered() {
  configure_asan
  # Not the fuzz targets (label fuzz): the ordinary stage runs their deterministic replay too.
  (cd build-asan && ctest -N -LE '^(gpu|release_only|fuzz)$' | sed -n 's/^ *Test *#[0-9]*: //p')
}

case $mode in
  covered) list_covered ;;
  build_tsan) build_tsan ;;  # internal: run_asan's background build
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan overlap_tsan; run_tsan ;;
esac
