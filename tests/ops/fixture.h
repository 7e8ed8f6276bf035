// Reads the PyTorch golden fixtures that tools/gen_op_fixtures.py writes into
// tests/fixtures/ops/<name>.bin, and compares loom's results against them.
//
// File format (all integers little-endian; the generator's docstring is the other copy):
//   magic "LOOMFIX1" (8 bytes), u32 count, then per tensor:
//   u32 name_len, name bytes, u32 dtype (0 = f32, 1 = i32), u32 rank, i64 dims[rank],
//   numel * 4 bytes of row-major data. Rank 0 is a scalar (one element).
// A malformed file is an error naming the file, the tensor and what was expected, never a
// crash or a silent short read. Header-only: tests/ops globs only *_test.cc files.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace loom::testing {

inline constexpr char kFixtureMagic[8] = {'L', 'O', 'O', 'M', 'F', 'I', 'X', '1'};

// Where the committed fixtures live: $LOOM_SOURCE_DIR (set by ctest) or the compile-time
// source dir as a fallback, plus tests/fixtures/ops.
inline std::string FixtureDir() {
  const char* root = std::getenv("LOOM_SOURCE_DIR");
  if (root != nullptr && *root == '\0') root = nullptr;
#ifdef LOOM_SOURCE_DIR
  if (root == nullptr) root = LOOM_SOURCE_DIR;
#endif
  return absl::StrCat(root != nullptr ? root : ".", "/tests/fixtures/ops");
}

class Fixture {
 public:
  struct Entry {
    DType dtype = DType::kF32;
    Shape shape;
    std::vector<char> bytes;  // numel * 4
  };

  // Loads <FixtureDir()>/<name>.bin.
  static absl::StatusOr<Fixture> Load(const std::string& name) {
    return LoadFile(absl::StrCat(FixtureDir(), "/", name, ".bin"));
  }

  static absl::StatusOr<Fixture> LoadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("fixture ", path,
                                              ": cannot open (regenerate with "
                                              "/usr/bin/python3 tools/gen_op_fixtures.py)"));
    }
    std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return Parse(data, path);
  }

  // Parses the bytes of a fixture file; `path` only names it in errors.
  static absl::StatusOr<Fixture> Parse(const std::vector<char>& data, const std::string& path) {
    Fixture f;
    f.path_ = path;
    size_t pos = 0;
    auto need = [&](size_t n, const std::string& what) -> absl::Status {
      if (data.size() - pos < n) {
        return absl::DataLossError(absl::StrCat("fixture ", path, ": truncated at byte ", pos,
                                                " reading ", what, " (", n, " bytes needed, ",
                                                data.size() - pos, " left)"));
      }
      return absl::OkStatus();
    };
    auto u32 = [&](const std::string& what) -> absl::StatusOr<uint32_t> {
      LOOM_RETURN_IF_ERROR(need(4, what));
      uint32_t v;
      std::memcpy(&v, data.data() + pos, 4);
      pos += 4;
      return v;
    };
    LOOM_RETURN_IF_ERROR(need(8, "magic"));
    if (std::memcmp(data.data(), kFixtureMagic, 8) != 0) {
      return absl::DataLossError(
          absl::StrCat("fixture ", path, ": bad magic (expected \"LOOMFIX1\")"));
    }
    pos = 8;
    auto count = u32("tensor count");
    if (!count.ok()) return count.status();
    for (uint32_t i = 0; i < *count; ++i) {
      const std::string idx = absl::StrCat("tensor #", i);
      auto name_len = u32(idx + " name length");
      if (!name_len.ok()) return name_len.status();
      LOOM_RETURN_IF_ERROR(need(*name_len, idx + " name"));
      std::string name(data.data() + pos, *name_len);
      pos += *name_len;
      auto dtype = u32("dtype of " + name);
      if (!dtype.ok()) return dtype.status();
      if (*dtype > 1) {
        return absl::DataLossError(absl::StrCat("fixture ", path, ": tensor '", name,
                                                "' has dtype code ", *dtype,
                                                " (expected 0 = f32 or 1 = i32)"));
      }
      auto rank = u32("rank of " + name);
      if (!rank.ok()) return rank.status();
      if (*rank > 8) {
        return absl::DataLossError(absl::StrCat("fixture ", path, ": tensor '", name, "' has rank ",
                                                *rank, " (at most 8 expected)"));
      }
      LOOM_RETURN_IF_ERROR(need(8 * size_t{*rank}, "dims of " + name));
      std::vector<int64_t> dims(*rank);
      if (*rank > 0) std::memcpy(dims.data(), data.data() + pos, 8 * dims.size());
      pos += 8 * dims.size();
      int64_t numel = 1;
      for (int64_t d : dims) {
        if (d < 0 || d > (int64_t{1} << 30)) {
          return absl::DataLossError(
              absl::StrCat("fixture ", path, ": tensor '", name, "' has dimension ", d));
        }
        numel *= d;
      }
      LOOM_RETURN_IF_ERROR(need(4 * static_cast<size_t>(numel), "data of " + name));
      Entry e;
      e.dtype = *dtype == 0 ? DType::kF32 : DType::kI32;
      e.shape = Shape(dims);
      e.bytes.assign(data.data() + pos, data.data() + pos + 4 * numel);
      pos += 4 * numel;
      if (!f.entries_.emplace(name, std::move(e)).second) {
        return absl::DataLossError(
            absl::StrCat("fixture ", path, ": tensor '", name, "' appears twice"));
      }
    }
    if (pos != data.size()) {
      return absl::DataLossError(absl::StrCat("fixture ", path, ": ", data.size() - pos,
                                              " trailing bytes after the last tensor"));
    }
    return f;
  }

  const std::string& path() const { return path_; }
  bool Has(const std::string& name) const { return entries_.count(name) > 0; }

  // A fresh CPU tensor holding a copy of the named entry (safe to overwrite).
  absl::StatusOr<Tensor> Get(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("fixture ", path_, ": no tensor '", name, "'"));
    }
    const Entry& e = it->second;
    auto t = Tensor::Empty(e.shape, e.dtype, CpuDevice());
    if (!t.ok()) return t.status();
    if (!e.bytes.empty()) std::memcpy(t->data(), e.bytes.data(), e.bytes.size());
    return *t;
  }

  // The single value of a rank-0 (or one-element) f32 / i32 entry.
  absl::StatusOr<float> Float(const std::string& name) const {
    auto t = Scalar(name, DType::kF32);
    if (!t.ok()) return t.status();
    return t->data_as<float>()[0];
  }
  absl::StatusOr<int64_t> Int(const std::string& name) const {
    auto t = Scalar(name, DType::kI32);
    if (!t.ok()) return t.status();
    return t->data_as<int32_t>()[0];
  }

 private:
  absl::StatusOr<Tensor> Scalar(const std::string& name, DType dtype) const {
    auto t = Get(name);
    if (!t.ok()) return t.status();
    if (t->numel() != 1 || t->dtype() != dtype) {
      return absl::InvalidArgumentError(absl::StrCat("fixture ", path_, ": '", name, "' is ",
                                                     t->DebugString(), ", expected a ",
                                                     std::string(DTypeName(dtype)), " scalar"));
    }
    return t;
  }

  std::string path_;
  std::map<std::string, Entry> entries_;
};

// Tolerance of the golden comparisons: |got - want| <= kGoldenRtol * |want| + kGoldenAtol.
// PyTorch computed in float64 and stored float32, loom computes in float32, so the gap is
// float32 rounding (~6e-8 relative per operation, a few dozen operations deep here). The
// absolute floor covers entries that are sums of terms which cancel (a gradient component
// near zero whose terms are of order 1): their float32 error is set by the terms, not by the
// tiny result.
inline constexpr double kGoldenRtol = 1e-5;
inline constexpr double kGoldenAtol = 1e-6;

// Compares a CPU f32 tensor (or anything ToFloatVector reads) with fixture entry `name`:
// same shape, and every element within the tolerance above. Reports the worst element and up
// to 5 mismatches.
inline ::testing::AssertionResult MatchesFixture(const Tensor& got, const Fixture& fx,
                                                 const std::string& name, double rtol = kGoldenRtol,
                                                 double atol = kGoldenAtol) {
  auto want_t = fx.Get(name);
  if (!want_t.ok()) return ::testing::AssertionFailure() << want_t.status().message();
  if (got.shape() != want_t->shape()) {
    return ::testing::AssertionFailure()
           << fx.path() << " '" << name << "': loom produced shape " << got.shape().ToString()
           << ", fixture has " << want_t->shape().ToString();
  }
  auto g = got.ToFloatVector();
  auto w = want_t->ToFloatVector();
  if (!g.ok()) return ::testing::AssertionFailure() << g.status().message();
  int bad = 0;
  double worst = 0;
  int64_t worst_i = -1;
  std::string details;
  for (size_t i = 0; i < w->size(); ++i) {
    const double gi = (*g)[i], wi = (*w)[i];
    const double err = std::fabs(gi - wi);
    const double tol = rtol * std::fabs(wi) + atol;
    const double ratio = err / tol;
    if (!(err <= tol)) {  // also catches NaN
      if (++bad <= 5) absl::StrAppend(&details, "\n  [", i, "] got ", gi, " want ", wi);
    }
    if (!(ratio <= worst)) {
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_i = static_cast<int64_t>(i);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << fx.path() << " '" << name << "': " << bad << " of " << w->size()
         << absl::StrFormat(
                " elements outside %g*|want| + %g (worst at [%d], %.3gx the "
                "tolerance):",
                rtol, atol, worst_i, worst)
         << details;
}

}  // namespace loom::testing
