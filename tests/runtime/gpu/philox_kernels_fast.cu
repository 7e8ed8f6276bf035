// Philox test kernels under --use_fast_math (set in CMakeLists.txt): flush-to-zero, approximate
// division and sqrt and fused multiply-adds must not change the stream, since the header uses
// explicit round-to-nearest intrinsics.
#define LOOM_PHILOX_RUN_NAME RunPhiloxKernelsFastMath
#include "tests/runtime/gpu/philox_kernels.cuh"
