// The safetensors file format (Hugging Face's weights files): an 8-byte little-endian header
// length N, N bytes of JSON naming each tensor's dtype, shape and byte range in the data that
// follows ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}, plus an
// optional "__metadata__" of strings), then the data. ParseSafetensors checks everything a
// reader relies on before any tensor is read: the header's length and JSON, each dtype and
// shape, each byte range inside the data and exactly as long as the shape needs. Errors name
// the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dtype.h"
#include "runtime/files.h"

namespace loom {

struct SafetensorsTensor {
  std::string dtype;  // as written: "F32", "BF16", "F16", "I64", ...
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapped file
  int64_t bytes = 0;
};

// The tensors of a mapped safetensors file by name. Tensors of dtypes loom cannot read (F64,
// integers) are listed with their dtype; only F32, BF16 and F16 have a DType (SafetensorsDType).
absl::StatusOr<std::map<std::string, SafetensorsTensor>> ParseSafetensors(const MappedFile& file);

// "F32" -> kF32, "BF16" -> kBF16, "F16" -> kF16; anything else InvalidArgument.
absl::StatusOr<DType> SafetensorsDType(const std::string& name);
const char* SafetensorsDTypeName(DType dtype);  // the inverse

// One tensor to write: its values converted from f32 to `dtype` on encoding.
struct SafetensorsOut {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};
// A whole safetensors file, tensors in the order given, data 8-byte aligned;
// metadata {"format": "pt"} as PyTorch's writer puts it, so transformers loads it.
std::string EncodeSafetensors(const std::vector<SafetensorsOut>& tensors, DType dtype);

// Shortest decimal text that reads back as the same float (for JSON written by loom).
std::string FloatJson(float value);

}  // namespace loom
