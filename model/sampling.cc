#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/philox.h"
#include "runtime/status.h"

namespace loom {

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
  const int64_t local = logits.dim(1);
  LOOM_ASSIGN_OR_RETURN(Tensor r, logits.Slice(row, row + 1).Reshape(Shape{local}));
  LOOM_ASSIGN_OR_RETURN(std::vector<float> l, r.ToFloatVector());
  if (local != padded_vocab) {
    if (tp == nullptr || local * tp->size() != padded_vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("SampleTopK: a vocab slice of ", local, " rows of ", padded_vocab,
                       " needs the tensor group that holds the others"));
    }
    std::vector<float> all(padded_vocab);
    Tensor mine = Tensor::View(l.data(), Shape{local}, DType::kF32, CpuDevice());
    LOOM_RETURN_IF_ERROR(tp->AllGather(
        mine, Tensor::View(all.data(), Shape{padded_vocab}, DType::kF32, CpuDevice())));
    l = std::move(all);
  }
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

}  // namespace loom
