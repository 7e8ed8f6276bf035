// Cross-entropy with logits of magnitude 50-100 (either sign) and with one dominant logit, where
// a softmax that does not subtract the true row maximum underflows or overflows in float: the
// fused op and the vocab-parallel pieces over 2, 3 and 4 slices (max, sum of exponentials and
// target logit combined as the tensor group's all-reduces combine them: max, sum, sum) against
// a double-precision reference. The model's loss at tp 2, 3, 4 with such logits is checked in
// tests/parallel/large_logits_train_test.cc.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cross_entropy.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::RandomDoubles;

std::vector<float> Floats(const Tensor& t) { return *t.ToFloatVector(); }
Tensor ZerosF32(const Shape& s) { return *Tensor::Zeros(s, DType::kF32, CpuDevice()); }

constexpr int64_t kRows = 8, kVocab = 60;  // 60 splits into 2, 3 and 4 slices

// Logits of magnitude 50-100 with random signs; `dominant`: one column per row far above the
// rest (100 against at most 5), not always in the first slice.
std::vector<float> LargeLogits(bool dominant) {
  const auto u = RandomDoubles(kRows * kVocab, dominant ? 11 : 12, 0.0, 1.0);
  std::vector<float> x(kRows * kVocab);
  for (int64_t i = 0; i < kRows * kVocab; ++i) {
    if (dominant) {
      x[i] = static_cast<float>(5.0 * u[i]);
    } else {
      const double mag = 50.0 + 50.0 * std::fmod(u[i] * 7.0, 1.0);
      x[i] = static_cast<float>(u[i] < 0.5 ? -mag : mag);
    }
  }
  if (dominant) {
    for (int64_t r = 0; r < kRows; ++r) x[r * kVocab + (r * 17) % kVocab] = 100.0f;
  }
  return x;
}

// Targets: the row's largest logit for some rows, a small or negative one for others.
std::vector<int32_t> Targets(const std::vector<float>& x) {
  std::vector<int32_t> t(kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    const float* row = &x[r * kVocab];
    t[r] = static_cast<int32_t>(r % 2 == 0 ? std::max_element(row, row + kVocab) - row
                                           : std::min_element(row, row + kVocab) - row);
  }
  return t;
}

void Reference(const std::vector<float>& x, const std::vector<int32_t>& t, double dloss,
               std::vector<double>* losses, std::vector<double>* grad) {
  losses->assign(kRows, 0.0);
  grad->assign(kRows * kVocab, 0.0);
  for (int64_t r = 0; r < kRows; ++r) {
    double mx = -1e300, sum = 0.0;
    for (int64_t j = 0; j < kVocab; ++j) mx = std::max(mx, double{x[r * kVocab + j]});
    for (int64_t j = 0; j < kVocab; ++j) sum += std::exp(x[r * kVocab + j] - mx);
    (*losses)[r] = std::log(sum) + mx - x[r * kVocab + t[r]];
    for (int64_t j = 0; j < kVocab; ++j) {
      (*grad)[r * kVocab + j] =
          dloss * (std::exp(x[r * kVocab + j] - mx) / sum - (j == t[r] ? 1.0 : 0.0));
    }
  }
}

void ExpectNear(const std::vector<float>& losses, const std::vector<float>& grad,
                const std::vector<double>& want_losses, const std::vector<double>& want_grad,
                const std::string& what) {
  for (int64_t r = 0; r < kRows; ++r) {
    ASSERT_TRUE(std::isfinite(losses[r])) << what << ": row " << r;
    EXPECT_NEAR(losses[r], want_losses[r], 1e-5 * std::max(1.0, want_losses[r]))
        << what << ": loss of row " << r;
  }
  for (int64_t i = 0; i < kRows * kVocab; ++i) {
    ASSERT_TRUE(std::isfinite(grad[i])) << what << ": gradient " << i;
    EXPECT_NEAR(grad[i], want_grad[i], 1e-6) << what << ": gradient " << i;
  }
}

void Check(bool dominant, int slices) {
  const std::string what = ::testing::PrintToString(slices) + " slice(s), " +
                           (dominant ? "one dominant logit" : "logits of magnitude 50-100");
  const std::vector<float> x = LargeLogits(dominant);
  const std::vector<int32_t> targets = Targets(x);
  const double dloss = 1.0 / kRows;
  std::vector<double> want_losses, want_grad;
  Reference(x, targets, dloss, &want_losses, &want_grad);
  Tensor tg = Tensor::FromVectorI32(targets, {kRows});
  if (slices == 1) {
    Tensor losses = ZerosF32({kRows}), grad = ZerosF32({kRows, kVocab});
    ASSERT_TRUE(CrossEntropyForwardBackward(Tensor::FromVector(x, {kRows, kVocab}), tg, losses,
                                            &grad, static_cast<float>(dloss))
                    .ok());
    ExpectNear(Floats(losses), Floats(grad), want_losses, want_grad, what);
    return;
  }
  const int64_t vs = kVocab / slices;
  std::vector<Tensor> parts;
  for (int s = 0; s < slices; ++s) {
    std::vector<float> sl(kRows * vs);
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t j = 0; j < vs; ++j) sl[r * vs + j] = x[r * kVocab + s * vs + j];
    }
    parts.push_back(Tensor::FromVector(sl, {kRows, vs}));
  }
  // The tensor group's reductions: max of the maxima, sums of the rest.
  std::vector<float> gmax(kRows, -std::numeric_limits<float>::infinity()), gsum(kRows, 0.0f),
      gtarget(kRows, 0.0f);
  for (int s = 0; s < slices; ++s) {
    Tensor mx = ZerosF32({kRows});
    ASSERT_TRUE(LogitsRowMax(parts[s], mx).ok());
    const auto m = Floats(mx);
    for (int64_t r = 0; r < kRows; ++r) gmax[r] = std::max(gmax[r], m[r]);
  }
  Tensor gmax_t = Tensor::FromVector(gmax, {kRows});
  for (int s = 0; s < slices; ++s) {
    Tensor se = ZerosF32({kRows}), tl = ZerosF32({kRows});
    ASSERT_TRUE(LogitsSumExp(parts[s], gmax_t, se).ok());
    ASSERT_TRUE(TargetLogit(parts[s], tg, s * vs, tl).ok());
    const auto sev = Floats(se), tlv = Floats(tl);
    for (int64_t r = 0; r < kRows; ++r) {
      gsum[r] += sev[r];
      gtarget[r] += tlv[r];
    }
  }
  Tensor gsum_t = Tensor::FromVector(gsum, {kRows});
  Tensor gtarget_t = Tensor::FromVector(gtarget, {kRows});
  std::vector<float> grad(kRows * kVocab);
  for (int s = 0; s < slices; ++s) {
    Tensor losses = ZerosF32({kRows});
    ASSERT_TRUE(VocabParallelCrossEntropyFinish(parts[s], tg, s * vs, gmax_t, gsum_t, gtarget_t,
                                                losses, &parts[s], static_cast<float>(dloss))
                    .ok());
    const auto g = Floats(parts[s]);
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t j = 0; j < vs; ++j) grad[r * kVocab + s * vs + j] = g[r * vs + j];
    }
    if (s == slices - 1) ExpectNear(Floats(losses), grad, want_losses, want_grad, what);
  }
}

TEST(CrossEntropyLargeLogitsTest, MagnitudesFiftyToHundredMatchDouble) {
  for (int slices : {1, 2, 3, 4}) Check(false, slices);
}

TEST(CrossEntropyLargeLogitsTest, OneDominantLogitMatchesDouble) {
  for (int slices : {1, 2, 3, 4}) Check(true, slices);
}

}  // namespace
}  // namespace loom::ops
