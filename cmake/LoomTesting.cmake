# Test registration helpers.
#   loom_add_test(NAME SOURCES a.cc b.cc LIBS x y [LABELS l] [GPU])
#     (one OpenMP thread: ctest runs two tests at once on a 2-core machine)
#     one GoogleTest binary run by ctest; GPU tests get the `gpu` label and tests/gpu_test_main.cc
#     as their main: without a CUDA device that answers it prints why and exits 77, which ctest
#     reports as Skipped (SKIP_RETURN_CODE), so a GPU binary that ran nothing never counts as
#     passed. Their tests still GTEST_SKIP with a reason when run by hand without a GPU.
#   loom_add_mpi_test(NAME RANKS N SOURCES ... LIBS ...)
#     the same binary run under `mpirun -np N --oversubscribe`, one OpenMP thread per rank so
#     that ranks on a 2-core machine do not thrash.
#   loom_add_mpi_run(NAME TARGET t RANKS N ...): see below.
# Tests run one OpenMP thread (above), except in a ThreadSanitizer build (LOOM_SANITIZE=thread,
# scripts/sanitize.sh tsan): there every test runs two, so the threaded CPU paths run threaded
# and a race between their threads is seen.
set(LOOM_TEST_THREADS 1)
if(LOOM_SANITIZE MATCHES "thread")
  set(LOOM_TEST_THREADS 2)
endif()

# Stages (scripts/test.sh, docs/testing.md): CI runs each CPU test once, in the ASan + UBSan
# build (scripts/sanitize.sh), and the ordinary (optimized, CUDA) build's ctest runs what that
# stage does not: GPU tests, CUDA-build-only entries, the fuzz replay and tests labelled
# `release_only` (LABELS release_only: a test whose sanitized run costs far more than it adds;
# it then runs in the optimized build only). New tests fall under this without a list to edit.
#
# A test binary's own files are compiled -O1 in an optimized build (not the libraries it
# tests, which keep -O3): the GoogleTest expansions compile in 2/3 of the time
# (trainer_test.cc: 11.3 s -> 7.3 s CPU with GCC) and run the same checks.
function(loom_test_compile_options name)
  if(NOT LOOM_SANITIZE)
    target_compile_options(${name} PRIVATE
        $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:Release,RelWithDebInfo>>:-O1>)
  endif()
endfunction()

function(loom_add_test name)
  cmake_parse_arguments(T "GPU" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(T_GPU AND LOOM_SANITIZE)
    return()  # sanitizer builds are CPU-only: a GPU test would only compile and skip
  endif()
  if(T_GPU)
    # Exits 77 (ctest: Skipped) with the reason when no CUDA device answers.
    add_executable(${name} ${T_SOURCES} ${PROJECT_SOURCE_DIR}/tests/gpu_test_main.cc)
    target_link_libraries(${name} PRIVATE ${T_LIBS} loom_runtime GTest::gtest)
  else()
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  endif()
  loom_test_compile_options(${name})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  set(labels ${T_LABELS})
  if(T_GPU)
    list(APPEND labels gpu)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT}
      ENVIRONMENT "OMP_NUM_THREADS=${LOOM_TEST_THREADS};OPENBLAS_NUM_THREADS=1;LOOM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  if(labels)
    set_tests_properties(${name} PROPERTIES LABELS "${labels}")
  endif()
  if(T_GPU)
    set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77)
  endif()
endfunction()

function(loom_mpi_test_main_library)
  if(NOT TARGET loom_mpi_test_main)
    add_library(loom_mpi_test_main STATIC ${PROJECT_SOURCE_DIR}/tests/mpi_test_main.cc)
    target_link_libraries(loom_mpi_test_main PUBLIC loom_parallel GTest::gtest)
  endif()
endfunction()

function(loom_add_mpi_test name)
  cmake_parse_arguments(T "GPU" "RANKS;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(T_GPU)
    # A multi-rank GPU test brings its own main, which must exit 77 on every rank.
    add_executable(${name} ${T_SOURCES})
  else()
    # One main for every multi-rank test (tests/mpi_test_main.cc: rank-0 report, worst result
    # over the ranks, deadline); the test files have none. Compiled once, as a library.
    loom_mpi_test_main_library()
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE loom_mpi_test_main)
  endif()
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest)
  loom_test_compile_options(${name})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  set(gpu)
  if(T_GPU)
    set(gpu GPU)
  endif()
  loom_add_mpi_run(${name} TARGET ${name} RANKS ${T_RANKS} TIMEOUT "${T_TIMEOUT}"
                   LABELS ${T_LABELS} ${gpu})
endfunction()

#   loom_add_mpi_run(NAME TARGET t RANKS N [TIMEOUT s] [LABELS l] [GPU])
#     one more ctest entry running an existing mpi test binary under another rank count.
function(loom_add_mpi_run name)
  cmake_parse_arguments(T "GPU" "TARGET;RANKS;TIMEOUT" "LABELS" ${ARGN})
  add_test(NAME ${name}
           COMMAND ${MPIEXEC_EXECUTABLE} -np ${T_RANKS} --oversubscribe --bind-to none
                   -x OMP_NUM_THREADS=${LOOM_TEST_THREADS} -x OPENBLAS_NUM_THREADS=1 -x LOOM_SOURCE_DIR
                   $<TARGET_FILE:${T_TARGET}>)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(labels mpi ${T_LABELS})
  if(T_GPU)
    # A multi-rank GPU test's own main must exit 77 on every rank when no device answers (and
    # print "SKIPPED: why"): mpirun passes a rank's exit code on, and the line is a second
    # signal should an MPI not do so.
    list(APPEND labels gpu)
    set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77
                         SKIP_REGULAR_EXPRESSION "(^|\n)SKIPPED: ")
  endif()
  # tests/mpi_test_main.cc aborts with the name of the test it is in shortly before ctest would
  # kill the job without a word.
  math(EXPR deadline "${T_TIMEOUT} - 15")
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${labels}" PROCESSORS ${T_RANKS}
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;LOOM_SOURCE_DIR=${CMAKE_SOURCE_DIR};LOOM_TEST_DEADLINE_S=${deadline}")
endfunction()
