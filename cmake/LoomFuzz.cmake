# Fuzz targets (tests/fuzz/fuzz_target.h says what a target is).
#   loom_add_fuzz_target(NAME SOURCES a.cc LIBS x y [CORPUS dir])
#     one executable and one ctest entry (label `fuzz`) over the committed seed corpus
#     (default tests/fuzz/corpus/NAME):
#     - ordinary builds: tests/fuzz/fuzz_main.cc replays the corpus and LOOM_FUZZ_MUTATIONS
#       deterministic mutations of each file (bounded, reproducible);
#     - LOOM_LIBFUZZER=ON (clang; scripts/sanitize.sh turns it on with ASan + UBSan): a
#       libFuzzer binary, run for LOOM_FUZZ_SECONDS from the corpus under a 2 GiB RSS limit,
#       a 1 GiB limit on any one allocation and 10 s per input; new inputs it finds go to
#       <build>/fuzz/NAME/corpus, a crashing input to <build>/fuzz/NAME/crash-*.
#   The libraries the targets read with (LOOM_FUZZ_INSTRUMENTED) are compiled with
#   -fsanitize=fuzzer-no-link in that mode, so libFuzzer sees their coverage; the rest (ops,
#   parallel, train...) is not, so the sanitized suite does not pay for it.
# LOOM_LIBFUZZER and the instrumented libraries are set in cmake/LoomSanitize.cmake.
set(LOOM_FUZZ_SECONDS 20 CACHE STRING "Seconds each libFuzzer run lasts in ctest")
set(LOOM_FUZZ_MUTATIONS 500 CACHE STRING "Deterministic mutations of each corpus file in ctest")
if(LOOM_LIBFUZZER)
  message(STATUS "loom: fuzz targets are libFuzzer binaries (${LOOM_FUZZ_SECONDS} s each in ctest)")
endif()

function(loom_add_fuzz_target name)
  cmake_parse_arguments(F "" "CORPUS" "SOURCES;LIBS" ${ARGN})
  if(NOT F_CORPUS)
    set(F_CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${name})
  endif()
  if(LOOM_LIBFUZZER)
    add_executable(${name} ${F_SOURCES})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_compile_definitions(${name} PRIVATE LOOM_LIBFUZZER=1)
  else()
    add_executable(${name} ${F_SOURCES} ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_main.cc)
  endif()
  target_link_libraries(${name} PRIVATE ${F_LIBS} loom_runtime absl::status)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  if(LOOM_LIBFUZZER)
    set(work ${CMAKE_BINARY_DIR}/fuzz/${name})
    # libFuzzer writes what it finds into its first corpus directory: a scratch one, so the
    # committed seeds (read-only for it, the second) stay as they are.
    add_test(NAME ${name}
             COMMAND bash -c "mkdir -p \"$1/corpus\" && exec \"$0\" -max_total_time=${LOOM_FUZZ_SECONDS} -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -seed=1 -print_final_stats=1 -artifact_prefix=\"$1/\" \"$1/corpus\" \"$2\""
                     $<TARGET_FILE:${name}> ${work} ${F_CORPUS})
    math(EXPR timeout "${LOOM_FUZZ_SECONDS} + 120")
  else()
    add_test(NAME ${name} COMMAND ${name} ${F_CORPUS} --mutations ${LOOM_FUZZ_MUTATIONS})
    set(timeout 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS fuzz
      ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1;LOOM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
