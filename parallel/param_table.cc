#include "parallel/param_table.h"

#include <algorithm>
#include <array>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/philox.h"
#include "runtime/status.h"

namespace loom {

const char* TpSplitName(TpSplit split) {
  switch (split) {
    case TpSplit::kReplicated:
      return "replicated";
    case TpSplit::kColumn:
      return "column";
    case TpSplit::kRow:
      return "row";
    case TpSplit::kVocab:
      return "vocab";
  }
  return "?";
}

namespace {

// The split dimension and the sizes of the parts along it (one part unless fused).
int SplitDim(TpSplit s) { return s == TpSplit::kRow ? 1 : 0; }

std::vector<int64_t> PartsOf(const ParamDesc& d) {
  if (d.split == TpSplit::kColumn && !d.parts.empty()) return d.parts;
  return {d.shape[SplitDim(d.split)]};
}

absl::Status CheckSplit(const ParamDesc& d, int tp) {
  if (d.split == TpSplit::kReplicated || tp == 1) return absl::OkStatus();
  const int dim = SplitDim(d.split);
  if (d.shape.rank() <= dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter ", d.name, " ", d.shape.ToString(), " has no dimension ", dim, " to split ",
        TpSplitName(d.split), "-parallel"));
  }
  std::vector<int64_t> parts = PartsOf(d);
  int64_t sum = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    sum += parts[i];
    const int64_t unit = std::max<int64_t>(1, d.split_unit);
    if (parts[i] % (tp * unit) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter ", d.name, " ", d.shape.ToString(), ": ",
          parts.size() > 1 ? absl::StrCat("part ", i, " (", parts[i], " rows)")
                           : absl::StrCat("dimension ", dim, " (", parts[i], ")"),
          " does not split evenly over tp = ", tp,
          unit > 1 ? absl::StrCat(" in whole blocks of ", unit, " rows (", parts[i] / unit,
                                  " heads for ", tp, " ranks)")
                   : std::string()));
    }
  }
  if (sum != d.shape[dim]) {
    return absl::InvalidArgumentError(absl::StrCat("parameter ", d.name, ": parts [",
                                                   absl::StrJoin(d.parts, ","), "] sum to ", sum,
                                                   ", not dimension ", dim, " (", d.shape[dim],
                                                   ")"));
  }
  return absl::OkStatus();
}

// Calls f(global_index, local_index) for every element of `box` of a tensor of `shape`, with
// local indices counted from `local_start` in row-major box order. Rows along the last
// dimension are contiguous on both sides, so f is called with whole runs: f(g, l, n).
template <typename F>
void ForEachRun(const Shape& shape, const TensorBox& box, int64_t local_start, F&& f) {
  const int rank = shape.rank();
  if (rank == 0) {
    f(0, local_start, 1);
    return;
  }
  std::vector<int64_t> stride(rank, 1);
  for (int d = rank - 2; d >= 0; --d) stride[d] = stride[d + 1] * shape[d + 1];
  const int64_t run = box.extent[rank - 1];
  const int64_t runs = run == 0 ? 0 : box.numel() / run;
  std::vector<int64_t> idx(rank, 0);  // position within the box, last dim fixed at 0
  for (int64_t r = 0; r < runs; ++r) {
    int64_t g = 0;
    for (int d = 0; d < rank; ++d) g += (box.offset[d] + idx[d]) * stride[d];
    f(g, local_start + r * run, run);
    for (int d = rank - 2; d >= 0; --d) {  // odometer over the leading dimensions
      if (++idx[d] < box.extent[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

std::vector<TensorBox> ParamTable::PiecesOf(const ParamDesc& d, int tp, int tp_rank) {
  TensorBox whole;
  whole.offset.assign(d.shape.rank(), 0);
  whole.extent = d.shape.dims();
  if (d.split == TpSplit::kReplicated || tp == 1) return {whole};
  const int dim = SplitDim(d.split);
  std::vector<TensorBox> out;
  int64_t start = 0;
  for (int64_t part : PartsOf(d)) {
    TensorBox b = whole;
    const int64_t n = part / tp;
    b.offset[dim] = start + tp_rank * n;
    b.extent[dim] = n;
    out.push_back(b);
    start += part;
  }
  return out;
}

absl::StatusOr<ParamTable> ParamTable::Create(const std::vector<ParamDesc>& params, int tp,
                                              int tp_rank) {
  if (tp < 1 || tp_rank < 0 || tp_rank >= tp) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter table: tensor rank ", tp_rank, " of tp = ", tp));
  }
  ParamTable t;
  t.tp_ = tp;
  t.tp_rank_ = tp_rank;
  std::set<std::string> names;
  for (const ParamDesc& d : params) {
    if (!names.insert(d.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("parameter ", d.name, " declared twice"));
    }
    LOOM_RETURN_IF_ERROR(CheckSplit(d, tp));
    ParamSpec s;
    static_cast<ParamDesc&>(s) = d;
    s.global_shape = d.shape;
    s.pieces = PiecesOf(d, tp, tp_rank);
    std::vector<int64_t> local = d.shape.dims();
    if (d.split != TpSplit::kReplicated && tp > 1) local[SplitDim(d.split)] /= tp;
    s.shape = Shape(local);
    s.offset = t.total_;
    t.total_ += s.numel();
    t.global_total_ += d.shape.numel();
    t.specs_.push_back(std::move(s));
  }
  return t;
}

absl::StatusOr<const ParamSpec*> ParamTable::Find(const std::string& name) const {
  for (const auto& s : specs_) {
    if (s.name == name) return &s;
  }
  return absl::NotFoundError(absl::StrCat("no parameter named '", name, "'"));
}

namespace {
// FNV-1a of the name: gives each parameter its own Philox key, independent of buffer order.
uint64_t NameHash(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

absl::Status InitParams(const ParamTable& table, uint64_t seed, const Tensor& params) {
  if (params.dtype() != DType::kF32 || params.numel() != table.total()) {
    return absl::InvalidArgumentError(absl::StrCat("InitParams: expected f32[", table.total(),
                                                   "], got ", params.DebugString()));
  }
  std::vector<float> host(table.total());
  for (const ParamSpec& s : table.specs()) {
    const int64_t row = s.global_shape.rank() > 1 ? s.global_shape.numel() / s.global_shape[0]
                                                  : s.global_shape.numel();
    const uint64_t key = seed ^ NameHash(s.name);
    int64_t local = 0;
    for (const TensorBox& box : s.pieces) {
      std::vector<std::array<int64_t, 3>> runs;  // (global, local, count)
      ForEachRun(s.global_shape, box, s.offset + local, [&](int64_t g, int64_t l, int64_t n) {
        runs.push_back({g, l, n});
      });
      // Elements are independent (counter-based RNG), so threads may split them freely.
#pragma omp parallel for schedule(static)
      for (size_t r = 0; r < runs.size(); ++r) {
        const auto [g0, l0, n] = runs[r];
        for (int64_t k = 0; k < n; ++k) {
          const int64_t i = g0 + k;
          float v = 0.0f;
          switch (s.init) {
            case InitKind::kOnes:
              v = 1.0f;
              break;
            case InitKind::kZeros:
              v = 0.0f;
              break;
            case InitKind::kNormal:
              v = (s.zero_rows_from >= 0 && i / row >= s.zero_rows_from)
                      ? 0.0f
                      : s.std * NormalAt(key, static_cast<uint64_t>(i));
              break;
          }
          host[l0 + k] = v;
        }
      }
      local += box.numel();
    }
  }
  return params.CopyFromFloats(host);
}

absl::StatusOr<std::vector<float>> GatherGlobalParams(const ParamTable& table, const Tensor& local,
                                                      Communicator& tp) {
  if (tp.size() != table.tp() || tp.rank() != table.tp_rank()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GatherGlobalParams: the table is for tensor rank ", table.tp_rank(), " of ", table.tp(),
        " but the group ", tp.Describe(), " has this rank as ", tp.rank(), " of ", tp.size()));
  }
  if (local.numel() != table.total()) {
    return absl::InvalidArgumentError(absl::StrCat("GatherGlobalParams: expected ", table.total(),
                                                   " local elements, got ", local.numel()));
  }
  LOOM_ASSIGN_OR_RETURN(std::vector<float> mine, local.ToFloatVector());
  std::vector<float> out(table.global_total());
  int64_t global_offset = 0;
  for (const ParamSpec& s : table.specs()) {
    const int64_t n = s.numel();
    std::vector<float> all(n * tp.size());
    Tensor in = Tensor::View(mine.data() + s.offset, Shape{n}, DType::kF32, CpuDevice());
    Tensor gathered = Tensor::View(all.data(), Shape{n * tp.size()}, DType::kF32, CpuDevice());
    LOOM_RETURN_IF_ERROR(tp.AllGather(in, gathered));
    float* dst = out.data() + global_offset;
    ParamDesc global = s;  // PiecesOf works on the global shape
    global.shape = s.global_shape;
    for (int r = 0; r < tp.size(); ++r) {
      int64_t at = r * n;
      for (const TensorBox& box : ParamTable::PiecesOf(global, table.tp(), r)) {
        ForEachRun(s.global_shape, box, at, [&](int64_t g, int64_t l, int64_t cnt) {
          std::copy(all.begin() + l, all.begin() + l + cnt, dst + g);
        });
        at += box.numel();
      }
    }
    global_offset += s.global_shape.numel();
  }
  return out;
}

absl::StatusOr<std::vector<float>> SliceGlobalParams(const ParamTable& table,
                                                     absl::Span<const float> global) {
  if (static_cast<int64_t>(global.size()) != table.global_total()) {
    return absl::InvalidArgumentError(absl::StrCat("the model holds ", table.global_total(),
                                                   " parameters (global shapes), got ",
                                                   global.size()));
  }
  std::vector<float> out(table.total());
  int64_t global_offset = 0;
  for (const ParamSpec& s : table.specs()) {
    int64_t at = s.offset;
    const float* src = global.data() + global_offset;
    for (const TensorBox& box : s.pieces) {
      ForEachRun(s.global_shape, box, at, [&](int64_t g, int64_t l, int64_t cnt) {
        std::copy(src + g, src + g + cnt, out.begin() + l);
      });
      at += box.numel();
    }
    global_offset += s.global_shape.numel();
  }
  return out;
}

}  // namespace loom
