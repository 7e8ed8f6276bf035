// Philox test kernels with nvcc's default float flags.
#define LOOM_PHILOX_RUN_NAME RunPhiloxKernels
#include "tests/runtime/gpu/philox_kernels.cuh"
