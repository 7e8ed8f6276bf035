// Tensor: a typed, shaped view of contiguous memory on one device, optionally owning it.
//
// A Tensor is cheap to copy: copies share the same storage (a shared_ptr to a Buffer that
// returns its bytes to the device's caching allocator when the last view goes away). Views
// (Slice, Reshape, View over foreign memory) never copy. All tensors are row-major contiguous;
// ops assume it and check shapes, not strides.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/device.h"
#include "runtime/dtype.h"

namespace loom {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}
  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t operator[](int i) const { return dims_[i < 0 ? i + rank() : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : dims_) n *= d;
    return n;
  }
  const std::vector<int64_t>& dims() const { return dims_; }
  bool operator==(const Shape& o) const { return dims_ == o.dims_; }
  bool operator!=(const Shape& o) const { return dims_ != o.dims_; }
  std::string ToString() const;  // "[4, 64, 768]"

 private:
  std::vector<int64_t> dims_;
};

// Owned device memory; returns itself to the allocator on destruction.
class Buffer {
 public:
  Buffer(Device* device, void* ptr, size_t bytes) : device_(device), ptr_(ptr), bytes_(bytes) {}
  ~Buffer() { device_->allocator().Free(ptr_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

 private:
  Device* device_;
  void* ptr_;
  size_t bytes_;
};

class Tensor {
 public:
  Tensor() = default;

  // Allocates uninitialised memory from the device's caching allocator.
  static absl::StatusOr<Tensor> Empty(const Shape& shape, DType dtype, Device* device);
  static absl::StatusOr<Tensor> Zeros(const Shape& shape, DType dtype, Device* device);
  // A non-owning view over memory the caller keeps alive.
  static Tensor View(void* data, const Shape& shape, DType dtype, Device* device);
  // Host-side convenience: a CPU f32 / i32 tensor holding a copy of `values`.
  static Tensor FromVector(const std::vector<float>& values, const Shape& shape);
  static Tensor FromVectorI32(const std::vector<int32_t>& values, const Shape& shape);

  bool defined() const { return device_ != nullptr; }
  // The address as this thread may use it: a test device's memory is tagged so that the host
  // faults on it; its stream workers see the real address (runtime/device.h).
  void* data() const { return AddressForThisThread(data_); }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data());
  }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  Device* device() const { return device_; }
  bool is_cuda() const { return device_ != nullptr && device_->is_cuda(); }
  bool is_cpu() const { return device_ != nullptr && device_->is_cpu(); }
  // The host may dereference data() (CPU memory); false for GPU and test-device memory.
  bool on_host() const { return device_ != nullptr && device_->host_memory(); }

  // Rows [begin, end) along dimension 0; shares storage.
  Tensor Slice(int64_t begin, int64_t end) const;
  // Same elements, new shape (numel must match); shares storage.
  absl::StatusOr<Tensor> Reshape(const Shape& shape) const;
  // A flat view of `count` elements starting at element `offset`; shares storage.
  Tensor FlatView(int64_t offset, int64_t count) const;

  // Copies to another device (or a fresh copy on the same device).
  absl::StatusOr<Tensor> To(Device* device) const;
  // Writers are const: a Tensor is a view, and writing through it does not change the view.
  absl::Status CopyFrom(const Tensor& src) const;
  absl::Status Fill0() const;
  // Reads all elements as floats (any float dtype, from any device) / writes from floats.
  absl::StatusOr<std::vector<float>> ToFloatVector() const;
  absl::Status CopyFromFloats(absl::Span<const float> values) const;

  std::string DebugString() const;  // "f32[4, 64] on cpu"

 private:
  std::shared_ptr<Buffer> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Shape shape_;
  Device* device_ = nullptr;
};

// Returns InvalidArgument naming `what` unless t has exactly `shape`.
absl::Status CheckShape(const Tensor& t, const Shape& shape, const char* what);
absl::Status CheckDType(const Tensor& t, DType dtype, const char* what);
absl::Status CheckSameDevice(const Tensor& a, const Tensor& b, const char* what);

}  // namespace loom
