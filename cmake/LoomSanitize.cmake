# Sanitizer builds: LOOM_SANITIZE=address,undefined (ASan + UBSan) or thread (TSan), for the
# CPU suite (LOOM_CUDA=OFF); every target is built with it. scripts/sanitize.sh is the way in
# (clang, -O0 with line tables; see docs/testing.md). What it changes besides the flags:
#   - loom_ops (the CPU kernels' loops, where the suite spends its compute), loom_parallel and
#     loom_plan (the pipeline simulator and the planner's search) are built at -O1 even when
#     the rest is -O0: the sanitized suite then runs in about twice the plain time while the
#     other ~170 files compile in half the time -O1 takes;
#   - GPU tests are neither built nor registered (cmake/LoomTesting.cmake);
#   - TSan: tests run 2 OpenMP threads (cmake/LoomTesting.cmake);
#   - LOOM_LIBFUZZER (clang): the libraries the fuzz targets read with are compiled with
#     -fsanitize=fuzzer-no-link (cmake/LoomFuzz.cmake).
set(LOOM_SANITIZE "" CACHE STRING "Build with -fsanitize=<list> (address,undefined | thread)")
option(LOOM_LIBFUZZER "Build the fuzz targets as libFuzzer binaries (clang only)" OFF)
set(LOOM_FUZZ_INSTRUMENTED loom_runtime loom_proto loom_checkpoint loom_model loom_data loom_job)
if(LOOM_SANITIZE)
  add_compile_options(-fsanitize=${LOOM_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=${LOOM_SANITIZE})
  message(STATUS "loom: sanitizers ${LOOM_SANITIZE}")
endif()
if(LOOM_LIBFUZZER AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "LOOM_LIBFUZZER=ON needs clang (CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
endif()

# Per-target settings, once every target exists (deferred to the end of the top directory).
function(loom_sanitize_targets)
  if(LOOM_SANITIZE)
    target_compile_options(loom_ops PRIVATE -O1)
    # The pipeline simulator and the planner's search: at -O0 every std::map / tuple compare
    # is a call (plan_model_test's searches took 55 s sanitized against 2 s plain, nearly all
    # of it in SimulatePipeline's map lookups); -O1 inlines them for ~20 more files' compile.
    target_compile_options(loom_parallel PRIVATE -O1)
    target_compile_options(loom_plan PRIVATE -O1)
  endif()
  if(LOOM_LIBFUZZER)
    foreach(lib ${LOOM_FUZZ_INSTRUMENTED})
      target_compile_options(${lib} PRIVATE -fsanitize=fuzzer-no-link)
    endforeach()
  endif()
endfunction()
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL loom_sanitize_targets)
