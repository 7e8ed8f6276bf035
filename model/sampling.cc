#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/philox.h"
#include "runtime/status.h"

namespace loom {
namespace {

// Row `row` of the logits, all padded_vocab of them (gathered over the tensor group).
absl::StatusOr<std::vector<float>> GatherLogitsRow(const Tensor& logits, int64_t row,
                                                   int64_t padded_vocab, Communicator* tp) {
  const int64_t local = logits.dim(1);
  LOOM_ASSIGN_OR_RETURN(Tensor r, logits.Slice(row, row + 1).Reshape(Shape{local}));
  LOOM_ASSIGN_OR_RETURN(std::vector<float> l, r.ToFloatVector());
  if (local != padded_vocab) {
    if (tp == nullptr || local * tp->size() != padded_vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling: a vocab slice of ", local, " rows of ", padded_vocab,
                       " needs the tensor group that holds the others"));
    }
    std::vector<float> all(padded_vocab);
    Tensor mine = Tensor::View(l.data(), Shape{local}, DType::kF32, CpuDevice());
    LOOM_RETURN_IF_ERROR(tp->AllGather(
        mine, Tensor::View(all.data(), Shape{padded_vocab}, DType::kF32, CpuDevice())));
    l = std::move(all);
  }
  return l;
}

}  // namespace

absl::StatusOr<int32_t> SampleTopK(const Tensor& logits, int64_t row, int64_t vocab,
                                   int64_t padded_vocab, Communicator* tp, uint64_t seed,
                                   uint64_t draw, int k) {
  if (logits.rank() != 2 || row < 0 || row >= logits.dim(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleTopK: row ", row, " of logits shaped ", logits.shape().ToString()));
  }
  if (vocab < 1 || vocab > padded_vocab || k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleTopK: vocab ", vocab, " of padded ", padded_vocab, ", k ", k));
  }
  LOOM_ASSIGN_OR_RETURN(std::vector<float> l, GatherLogitsRow(logits, row, padded_vocab, tp));
  std::vector<int32_t> ids(vocab);
  for (int64_t v = 0; v < vocab; ++v) ids[v] = static_cast<int32_t>(v);
  const int64_t top = std::min<int64_t>(k, vocab);
  std::partial_sort(ids.begin(), ids.begin() + top, ids.end(),
                    [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  std::vector<double> p(top);
  double total = 0;
  for (int64_t j = 0; j < top; ++j) total += p[j] = std::exp(l[ids[j]] - l[ids[0]]);
  double u = UniformAt(seed, draw) * total;
  int64_t pick = top - 1;
  for (int64_t j = 0; j < top; ++j) {
    if ((u -= p[j]) <= 0) {
      pick = j;
      break;
    }
  }
  return ids[pick];
}

absl::StatusOr<int32_t> SampleToken(const Tensor& logits, int64_t row, int64_t vocab,
                                    int64_t padded_vocab, Communicator* tp,
                                    const SamplingOptions& o, uint64_t seed, uint64_t draw) {
  if (logits.rank() != 2 || row < 0 || row >= logits.dim(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleToken: row ", row, " of logits shaped ", logits.shape().ToString()));
  }
  if (vocab < 1 || vocab > padded_vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleToken: vocab ", vocab, " of padded ", padded_vocab));
  }
  LOOM_ASSIGN_OR_RETURN(std::vector<float> l, GatherLogitsRow(logits, row, padded_vocab, tp));
  if (!(o.temperature > 0)) {
    int32_t best = 0;
    for (int64_t v = 1; v < vocab; ++v) {
      if (l[v] > l[best]) best = static_cast<int32_t>(v);
    }
    return best;
  }
  std::vector<int32_t> ids(vocab);
  for (int64_t v = 0; v < vocab; ++v) ids[v] = static_cast<int32_t>(v);
  const int64_t top = o.top_k > 0 ? std::min<int64_t>(o.top_k, vocab) : vocab;
  // Largest first; equal logits by id, so every rank and run orders them alike.
  std::partial_sort(ids.begin(), ids.begin() + top, ids.end(),
                    [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  std::vector<double> p(top);
  double total = 0;
  for (int64_t j = 0; j < top; ++j) {
    total += p[j] = std::exp((static_cast<double>(l[ids[j]]) - l[ids[0]]) / o.temperature);
  }
  int64_t keep = top;
  if (o.top_p < 1) {
    double cum = 0;
    for (int64_t j = 0; j < top; ++j) {
      cum += p[j] / total;
      if (cum >= o.top_p) {
        keep = j + 1;
        break;
      }
    }
    total = 0;
    for (int64_t j = 0; j < keep; ++j) total += p[j];
  }
  double u = UniformAt(seed, draw) * total;
  for (int64_t j = 0; j < keep; ++j) {
    if ((u -= p[j]) <= 0) return ids[j];
  }
  return ids[keep - 1];
}

}  // namespace loom
