#include "runtime/tensor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace loom {

std::string Shape::ToString() const { return absl::StrCat("[", absl::StrJoin(dims_, ", "), "]"); }

absl::StatusOr<Tensor> Tensor::Empty(const Shape& shape, DType dtype, Device* device) {
  for (int64_t d : shape.dims()) {
    if (d < 0) return absl::InvalidArgumentError("negative dimension in shape " + shape.ToString());
  }
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.device_ = device;
  size_t bytes = t.nbytes();
  LOOM_ASSIGN_OR_RETURN(void* ptr, device->allocator().Allocate(bytes));
  t.storage_ = std::make_shared<Buffer>(device, ptr, bytes);
  t.data_ = ptr;
  return t;
}

absl::StatusOr<Tensor> Tensor::Zeros(const Shape& shape, DType dtype, Device* device) {
  LOOM_ASSIGN_OR_RETURN(Tensor t, Empty(shape, dtype, device));
  LOOM_RETURN_IF_ERROR(t.Fill0());
  return t;
}

Tensor Tensor::View(void* data, const Shape& shape, DType dtype, Device* device) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::FromVector(const std::vector<float>& values, const Shape& shape) {
  Tensor t = *Empty(shape, DType::kF32, CpuDevice());
  std::memcpy(t.data_, values.data(), std::min(values.size() * 4, t.nbytes()));
  return t;
}

Tensor Tensor::FromVectorI32(const std::vector<int32_t>& values, const Shape& shape) {
  Tensor t = *Empty(shape, DType::kI32, CpuDevice());
  std::memcpy(t.data_, values.data(), std::min(values.size() * 4, t.nbytes()));
  return t;
}

Tensor Tensor::Slice(int64_t begin, int64_t end) const {
  Tensor t = *this;
  int64_t row = shape_.rank() > 0 ? numel() / std::max<int64_t>(shape_[0], 1) : 1;
  std::vector<int64_t> dims = shape_.dims();
  if (!dims.empty()) dims[0] = end - begin;
  t.shape_ = Shape(dims);
  t.data_ = static_cast<char*>(data_) + begin * row * DTypeSize(dtype_);
  return t;
}

absl::StatusOr<Tensor> Tensor::Reshape(const Shape& shape) const {
  if (shape.numel() != numel()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot reshape ", shape_.ToString(), " (",
                                                   numel(), " elements) to ", shape.ToString()));
  }
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::FlatView(int64_t offset, int64_t count) const {
  Tensor t = *this;
  t.shape_ = Shape({count});
  t.data_ = static_cast<char*>(data_) + offset * DTypeSize(dtype_);
  return t;
}

absl::StatusOr<Tensor> Tensor::To(Device* device) const {
  LOOM_ASSIGN_OR_RETURN(Tensor t, Empty(shape_, dtype_, device));
  LOOM_RETURN_IF_ERROR(CopyBytes(device, t.data_, device_, data_, nbytes()));
  return t;
}

absl::Status Tensor::CopyFrom(const Tensor& src) const {
  if (src.numel() != numel() || src.dtype() != dtype_) {
    return absl::InvalidArgumentError(
        absl::StrCat("CopyFrom: ", src.DebugString(), " into ", DebugString()));
  }
  return CopyBytes(device_, data_, src.device_, src.data_, nbytes());
}

absl::Status Tensor::Fill0() const { return device_->Memset(data_, 0, nbytes()); }

absl::StatusOr<std::vector<float>> Tensor::ToFloatVector() const {
  std::vector<char> host(nbytes());
  LOOM_RETURN_IF_ERROR(CopyBytes(CpuDevice(), host.data(), device_, data_, nbytes()));
  std::vector<float> out(numel());
  for (int64_t i = 0; i < numel(); ++i) {
    switch (dtype_) {
      case DType::kF32: out[i] = reinterpret_cast<float*>(host.data())[i]; break;
      case DType::kBF16: out[i] = Bf16BitsToFloat(reinterpret_cast<uint16_t*>(host.data())[i]); break;
      case DType::kF16: out[i] = F16BitsToFloat(reinterpret_cast<uint16_t*>(host.data())[i]); break;
      case DType::kI32: out[i] = static_cast<float>(reinterpret_cast<int32_t*>(host.data())[i]); break;
      case DType::kU16: out[i] = static_cast<float>(reinterpret_cast<uint16_t*>(host.data())[i]); break;
    }
  }
  return out;
}

absl::Status Tensor::CopyFromFloats(absl::Span<const float> values) const {
  if (static_cast<int64_t>(values.size()) != numel()) {
    return absl::InvalidArgumentError(absl::StrCat("CopyFromFloats: ", values.size(),
                                                   " values into ", DebugString()));
  }
  std::vector<char> host(nbytes());
  for (int64_t i = 0; i < numel(); ++i) {
    switch (dtype_) {
      case DType::kF32: reinterpret_cast<float*>(host.data())[i] = values[i]; break;
      case DType::kBF16: reinterpret_cast<uint16_t*>(host.data())[i] = FloatToBf16Bits(values[i]); break;
      case DType::kF16: reinterpret_cast<uint16_t*>(host.data())[i] = FloatToF16Bits(values[i]); break;
      case DType::kI32: reinterpret_cast<int32_t*>(host.data())[i] = static_cast<int32_t>(values[i]); break;
      case DType::kU16: reinterpret_cast<uint16_t*>(host.data())[i] = static_cast<uint16_t>(values[i]); break;
    }
  }
  return CopyBytes(device_, data_, CpuDevice(), host.data(), nbytes());
}

std::string Tensor::DebugString() const {
  return absl::StrCat(std::string(DTypeName(dtype_)), shape_.ToString(), " on ",
                      device_ ? device_->Name() : "none");
}

absl::Status CheckShape(const Tensor& t, const Shape& shape, const char* what) {
  if (t.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected shape ", shape.ToString(),
                                                   ", got ", t.shape().ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckDType(const Tensor& t, DType dtype, const char* what) {
  if (t.dtype() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected dtype ", std::string(DTypeName(dtype)),
                                                   ", got ", std::string(DTypeName(t.dtype()))));
  }
  return absl::OkStatus();
}

absl::Status CheckSameDevice(const Tensor& a, const Tensor& b, const char* what) {
  if (a.device() != b.device()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": tensors on different devices (",
                                                   a.DebugString(), " vs ", b.DebugString(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace loom
