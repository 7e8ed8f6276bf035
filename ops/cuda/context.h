// Per-device state shared by every CUDA op: a cuBLAS handle, a cuBLASLt handle, a 32 MiB
// cuBLASLt workspace, the device's SM count and the stream all ops of that device are issued
// on. Created lazily on first use, once per device, and kept for the life of the process (ops
// are called from the training loop every step, so nothing here is torn down).
//
// Ops take no stream argument: they run on the device's op stream, which is the legacy default
// stream until SetOpStream() picks another (the trainer does this once at start-up). Keeping
// one stream per device also makes the single workspace safe: cuBLASLt calls that share it are
// ordered on that stream.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

inline constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

struct DeviceContext {
  int device = 0;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  void* workspace = nullptr;  // kCublasWorkspaceBytes of device memory for cuBLASLt
  size_t workspace_bytes = 0;
  cudaStream_t stream = nullptr;  // the op stream (nullptr = legacy default stream)
  int num_sms = 0;
  void* scratch = nullptr;  // see OpScratch()
  size_t scratch_bytes = 0;
};

// Makes `device` current on the calling thread and returns its context, creating it on first
// use. Thread-safe.
absl::StatusOr<DeviceContext*> GetDeviceContext(int device);

// The context of the device `t` lives on (which must be a CUDA device); makes it current.
absl::StatusOr<DeviceContext*> ContextFor(const Tensor& t);

// Issues every later op of `device` (kernels and cuBLAS calls) on `stream`, after the work
// queued on the previous op stream has finished. `stream` must be the legacy default stream
// (nullptr) or a stream created without cudaStreamNonBlocking: tensor copies and memsets
// (runtime/cuda_device.cc) run on the legacy default stream and rely on being ordered with the
// ops (the caching allocator's reuse rule, runtime/device.h).
absl::Status SetOpStream(int device, cudaStream_t stream);

// At least `bytes` of device memory (256-byte aligned) for the op being issued now: partial
// sums, sort buffers. It stays valid for work queued on the op stream until the next op asks
// for scratch, so an op must not call another op while it still needs its scratch. Grows on
// demand from the device's caching allocator (growth returns the old block to it without a
// synchronisation; steady-state training does not allocate).
// Like the ops themselves, not for concurrent use from several host threads on one device.
absl::StatusOr<void*> OpScratch(DeviceContext* ctx, size_t bytes);

// Lets `kernel` (a __global__ function's address) use `bytes` of dynamic shared memory on
// `device`. The attribute sticks to the function, so it is set once per (kernel, device, size):
// the launch path of every attention call does no driver call for it.
absl::Status AllowDynamicSmem(int device, const void* kernel, size_t bytes);

// Turns the error of the last kernel launch (bad configuration, no kernel image for this GPU)
// into a Status naming the kernel.
absl::Status CheckLaunch(const char* kernel_name);

}  // namespace loom::ops::cuda
