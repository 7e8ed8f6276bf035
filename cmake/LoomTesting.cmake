# Test registration helpers.
#   loom_add_test(NAME SOURCES a.cc b.cc LIBS x y [LABELS l] [GPU])
#     (one OpenMP thread: ctest runs two tests at once on a 2-core machine)
#     one GoogleTest binary run by ctest; GPU tests get the `gpu` label and must GTEST_SKIP
#     with a reason when no CUDA device answers.
#   loom_add_mpi_test(NAME RANKS N SOURCES ... LIBS ...)
#     the same binary run under `mpirun -np N --oversubscribe`, one OpenMP thread per rank so
#     that ranks on a 2-core machine do not thrash.
function(loom_add_test name)
  cmake_parse_arguments(T "GPU" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
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
      ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1;LOOM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  if(labels)
    set_tests_properties(${name} PROPERTIES LABELS "${labels}")
  endif()
endfunction()

function(loom_add_mpi_test name)
  cmake_parse_arguments(T "GPU" "RANKS;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  set(gpu_flag)
  if(T_GPU)
    set(gpu_flag GPU)
  endif()
  loom_add_mpi_run(${name} TARGET ${name} RANKS ${T_RANKS} TIMEOUT ${T_TIMEOUT} LABELS ${T_LABELS}
                   ${gpu_flag})
endfunction()

#   loom_add_mpi_run(NAME TARGET t RANKS N) registers one more run of an existing mpi test
#     binary (the same tests at another world size).
function(loom_add_mpi_run name)
  cmake_parse_arguments(T "GPU" "TARGET;RANKS;TIMEOUT" "LABELS" ${ARGN})
  add_test(NAME ${name}
           COMMAND ${MPIEXEC_EXECUTABLE} -np ${T_RANKS} --oversubscribe --bind-to none
                   -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 -x LOOM_SOURCE_DIR
                   $<TARGET_FILE:${T_TARGET}>)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(labels mpi ${T_LABELS})
  if(T_GPU)
    list(APPEND labels gpu)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${labels}" PROCESSORS ${T_RANKS}
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;LOOM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
