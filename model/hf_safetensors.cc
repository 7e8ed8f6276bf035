#include "model/hf_safetensors.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "runtime/status.h"

namespace loom {

namespace {

// Headers beyond this are not weights files (real ones are a few hundred KiB at most).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

int ElementBytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" ||
      dtype == "F8_E5M2") {
    return 1;
  }
  return 0;
}

// A JSON number that must be a whole number >= 0.
bool WholeNumber(const google::protobuf::Value& v, int64_t* out) {
  if (v.kind_case() != google::protobuf::Value::kNumberValue) return false;
  const double d = v.number_value();
  if (!(d >= 0) || d > 9.0e15 || std::floor(d) != d) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

}  // namespace

absl::StatusOr<DType> SafetensorsDType(const std::string& name) {
  if (name == "F32") return DType::kF32;
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype ", name, " is not a weight dtype loom reads (F32, BF16, F16)"));
}

const char* SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    default:
      return "F32";
  }
}

absl::StatusOr<std::map<std::string, SafetensorsTensor>> ParseSafetensors(const MappedFile& file) {
  const std::string& path = file.path();
  if (file.size() < 8) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", file.size(), " bytes, too short for a safetensors header"));
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(file.data()[i]) << (8 * i);
  if (n > kMaxHeaderBytes || n > file.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": safetensors header length ", n,
                                            " does not fit the file's ", file.size(),
                                            " bytes (not a safetensors file, or truncated)"));
  }
  const std::string json(reinterpret_cast<const char*>(file.data()) + 8, n);
  google::protobuf::Struct header;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &header);
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat(
        path, ": the safetensors header is not a JSON object: ", std::string(parsed.message())));
  }
  const uint8_t* data = file.data() + 8 + n;
  const uint64_t data_bytes = file.size() - 8 - n;
  std::map<std::string, SafetensorsTensor> out;
  for (const auto& [name, value] : header.fields()) {
    if (name == "__metadata__") continue;
    const std::string where = absl::StrCat(path, ": tensor ", name);
    if (value.kind_case() != google::protobuf::Value::kStructValue) {
      return absl::DataLossError(absl::StrCat(where, ": its header entry is not an object"));
    }
    const auto& f = value.struct_value().fields();
    auto dtype = f.find("dtype");
    auto shape = f.find("shape");
    auto offsets = f.find("data_offsets");
    if (dtype == f.end() || shape == f.end() || offsets == f.end() ||
        dtype->second.kind_case() != google::protobuf::Value::kStringValue ||
        shape->second.kind_case() != google::protobuf::Value::kListValue ||
        offsets->second.kind_case() != google::protobuf::Value::kListValue ||
        offsets->second.list_value().values_size() != 2) {
      return absl::DataLossError(absl::StrCat(
          where, ": its header entry needs dtype, shape and data_offsets [begin, end]"));
    }
    SafetensorsTensor t;
    t.dtype = dtype->second.string_value();
    const int elem = ElementBytes(t.dtype);
    if (elem == 0) {
      return absl::DataLossError(absl::StrCat(where, ": unknown dtype '", t.dtype, "'"));
    }
    int64_t numel = 1;
    for (const google::protobuf::Value& d : shape->second.list_value().values()) {
      int64_t dim = 0;
      if (!WholeNumber(d, &dim) || (dim > 0 && numel > (int64_t{1} << 50) / dim)) {
        return absl::DataLossError(absl::StrCat(where, ": bad shape in the header"));
      }
      t.shape.push_back(dim);
      numel *= dim;
    }
    int64_t begin = 0, end = 0;
    if (!WholeNumber(offsets->second.list_value().values(0), &begin) ||
        !WholeNumber(offsets->second.list_value().values(1), &end) || end < begin ||
        static_cast<uint64_t>(end) > data_bytes) {
      return absl::DataLossError(absl::StrCat(where, ": data_offsets lie outside the file's ",
                                              data_bytes, " data bytes (truncated?)"));
    }
    if (end - begin != numel * elem) {
      return absl::DataLossError(absl::StrCat(where, ": ", end - begin, " bytes for shape [",
                                              absl::StrJoin(t.shape, ", "), "] of ", t.dtype,
                                              ", which needs ", numel * elem));
    }
    t.data = data + begin;
    t.bytes = end - begin;
    out.emplace(name, std::move(t));
  }
  return out;
}

std::string EncodeSafetensors(const std::vector<SafetensorsOut>& tensors, DType dtype) {
  const int64_t elem = static_cast<int64_t>(DTypeSize(dtype));
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  int64_t at = 0;
  for (const SafetensorsOut& t : tensors) {
    const int64_t bytes = static_cast<int64_t>(t.values.size()) * elem;
    absl::StrAppend(&header, ",\"", t.name, "\":{\"dtype\":\"", SafetensorsDTypeName(dtype),
                    "\",\"shape\":[", absl::StrJoin(t.shape, ","), "],\"data_offsets\":[", at, ",",
                    at + bytes, "]}");
    at += bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';  // the data starts 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  out.reserve(out.size() + at);
  for (const SafetensorsOut& t : tensors) {
    if (dtype == DType::kF32) {
      out.append(reinterpret_cast<const char*>(t.values.data()), t.values.size() * 4);
      continue;
    }
    for (float v : t.values) {
      const uint16_t b = dtype == DType::kBF16 ? FloatToBf16Bits(v) : FloatToF16Bits(v);
      out.append(reinterpret_cast<const char*>(&b), 2);
    }
  }
  return out;
}

std::string FloatJson(float value) {
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, static_cast<double>(value));
    if (std::strtof(buf, nullptr) == value) break;
  }
  return buf;
}

}  // namespace loom
