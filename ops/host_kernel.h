// Where the CPU kernels run: at once on the CPU, or queued on a test device's op stream
// (runtime/test_device.h), where a worker thread runs them in stream order while the caller
// goes on, as a CUDA launch does. The dispatchers in ops/*.cc use this for every op, so an op
// on the test device runs exactly the arithmetic of the CPU reference.
//
// A kernel passed here runs later, on another thread: it must capture by value everything it
// uses (Tensors, not references or pointers to the caller's Tensors; OptionalTensor below
// holds an optional argument). It reads device addresses through Tensor::data(), which gives
// the worker the real address.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops {

// Ops on t run the CPU kernels (t lives on the CPU or on a test device).
inline bool RunsCpuKernels(const Tensor& t) {
  return t.device() != nullptr && (t.device()->is_cpu() || t.device()->is_test());
}

// Runs `kernel` for an op whose first input is `t`: now on the CPU (its status returned), or
// queued on t's test device (OK returned; a failure becomes the device's sticky error, seen by
// the next host wait). The worker runs it with the caller's OpenMP thread count, so the
// arithmetic (and its rounding) is the CPU run's.
absl::Status RunCpuKernel(const Tensor& t, std::function<absl::Status()> kernel);

// A copy of an optional Tensor argument (const Tensor* in the op's signature) that a queued
// kernel can hold; it reads as the pointer did (compares with nullptr, ->, converts to
// const Tensor*), so a kernel body is the same code as before, with `[=, bias =
// OptionalTensor(bias)]` in its capture list.
class OptionalTensor {
 public:
  explicit OptionalTensor(const Tensor* t) : has_(t != nullptr) {
    if (t != nullptr) t_ = *t;
  }
  const Tensor* get() const { return has_ ? &t_ : nullptr; }
  operator const Tensor*() const { return get(); }  // NOLINT: reads as the pointer it replaces
  const Tensor* operator->() const { return get(); }
  const Tensor& operator*() const { return t_; }

 private:
  bool has_;
  Tensor t_;
};

}  // namespace loom::ops
