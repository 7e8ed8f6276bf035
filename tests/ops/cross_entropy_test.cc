// Cross-entropy on the CPU: the fused op against naive double loops (ignored targets, padded
// vocabulary), its gradient against finite differences in double, in-place dlogits, the
// vocab-parallel pieces combined by hand over 2 and 4 slices against the fused op, and
// argument errors.
#include "ops/cross_entropy.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/cross_entropy.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::GradientMatches;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;

std::vector<float> Floats(const Tensor& t) { return *t.ToFloatVector(); }
Tensor ZerosF32(const Shape& s) { return *Tensor::Zeros(s, DType::kF32, CpuDevice()); }

// Targets in [0, valid) with a few ignored (negative) rows.
std::vector<int32_t> MakeTargets(int64_t n, int64_t valid, uint64_t seed) {
  const auto u = RandomDoubles(n, seed, 0.0, 1.0);
  std::vector<int32_t> t(n);
  for (int64_t r = 0; r < n; ++r) t[r] = static_cast<int32_t>(u[r] * valid);
  t[1 % n] = -1;
  if (n > 4) t[n - 2] = -100;
  return t;
}

void NaiveCrossEntropy(const std::vector<float>& logits, const std::vector<int32_t>& targets,
                       int64_t n, int64_t v, int64_t valid, double dloss,
                       std::vector<double>* losses, std::vector<double>* dlogits) {
  losses->assign(n, 0.0);
  dlogits->assign(n * v, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    if (targets[r] < 0) continue;
    double mx = -1e300;
    for (int64_t j = 0; j < valid; ++j) mx = std::max(mx, static_cast<double>(logits[r * v + j]));
    double sum = 0.0;
    for (int64_t j = 0; j < valid; ++j) sum += std::exp(logits[r * v + j] - mx);
    (*losses)[r] = std::log(sum) + mx - logits[r * v + targets[r]];
    for (int64_t j = 0; j < valid; ++j) {
      (*dlogits)[r * v + j] =
          dloss * (std::exp(logits[r * v + j] - mx) / sum - (j == targets[r] ? 1.0 : 0.0));
    }
  }
}

TEST(CrossEntropyTest, FusedMatchesNaiveLoops) {
  const int64_t n = 9, v = 37;
  for (int64_t valid : {v, int64_t{29}}) {
    SCOPED_TRACE(::testing::Message() << "valid_vocab " << valid);
    const auto logits = RandomFloats(n * v, 1, -6.0f, 6.0f);
    const auto targets = MakeTargets(n, valid, 2);
    const float dloss = 1.0f / 18.0f;
    Tensor losses = ZerosF32({n});
    Tensor dlogits = Tensor::FromVector(std::vector<float>(n * v, NAN), {n, v});
    ASSERT_TRUE(CrossEntropyForwardBackward(Tensor::FromVector(logits, {n, v}),
                                            Tensor::FromVectorI32(targets, {n}), losses, &dlogits,
                                            dloss, valid == v ? -1 : valid)
                    .ok());
    std::vector<double> rl, rd;
    NaiveCrossEntropy(logits, targets, n, v, valid, dloss, &rl, &rd);
    EXPECT_TRUE(AllClose(Floats(losses), rl, 1e-6, 1e-6));
    EXPECT_TRUE(AllClose(Floats(dlogits), rd, 1e-5, 1e-8));
    EXPECT_EQ(Floats(losses)[1], 0.0f);  // ignored row
  }
}

// L = dloss * sum_r loss_r; dlogits from the double kernel against central differences.
TEST(CrossEntropyTest, GradientMatchesFiniteDifferences) {
  const int64_t n = 6, v = 11, valid = 9;
  auto logits = RandomDoubles(n * v, 3, -3.0, 3.0);
  const auto targets = MakeTargets(n, valid, 4);
  const double dloss = 0.37;
  auto loss = [&]() {
    std::vector<double> losses(n);
    cpu::CrossEntropyForwardBackward<double>(logits.data(), targets.data(), n, v, valid,
                                             losses.data(), nullptr, dloss);
    double s = 0.0;
    for (double l : losses) s += dloss * l;
    return s;
  };
  std::vector<double> losses(n), dlogits(n * v, 1e30);
  cpu::CrossEntropyForwardBackward<double>(logits.data(), targets.data(), n, v, valid,
                                           losses.data(), dlogits.data(), dloss);
  EXPECT_TRUE(GradientMatches(loss, &logits, dlogits));
  // Padding columns and ignored rows get exactly zero gradient.
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < v; ++j) {
      if (j >= valid || targets[r] < 0) {
        EXPECT_EQ(dlogits[r * v + j], 0.0) << r << "," << j;
      }
    }
  }
}

TEST(CrossEntropyTest, InPlaceGradientAndLossOnlyAgree) {
  const int64_t n = 7, v = 50;
  const auto logits = RandomFloats(n * v, 5, -4.0f, 4.0f);
  const auto targets = MakeTargets(n, v, 6);
  Tensor tg = Tensor::FromVectorI32(targets, {n});
  Tensor l1 = ZerosF32({n}), l2 = ZerosF32({n}), l3 = ZerosF32({n}), d1 = ZerosF32({n, v});
  ASSERT_TRUE(
      CrossEntropyForwardBackward(Tensor::FromVector(logits, {n, v}), tg, l1, &d1, 0.5f).ok());
  Tensor inplace = Tensor::FromVector(logits, {n, v});
  ASSERT_TRUE(CrossEntropyForwardBackward(inplace, tg, l2, &inplace, 0.5f).ok());
  ASSERT_TRUE(
      CrossEntropyForwardBackward(Tensor::FromVector(logits, {n, v}), tg, l3, nullptr, 0.5f).ok());
  EXPECT_EQ(Floats(l1), Floats(l2));
  EXPECT_EQ(Floats(l1), Floats(l3));
  EXPECT_EQ(Floats(d1), Floats(inplace));
}

// Splits [n, slices * vs] logits (the last `pad` columns padding) into tensor-parallel slices,
// runs the pieces, combines max / sum / target logit by hand as the all-reduces would, and
// compares losses and the concatenated gradients with the fused op on the whole row.
void CheckVocabParallel(int slices, int64_t vs, int64_t pad) {
  SCOPED_TRACE(::testing::Message()
               << slices << " slices of " << vs << ", " << pad << " padding columns");
  const int64_t n = 10, v = slices * vs, valid = v - pad;
  const auto full = RandomFloats(n * v, 7 + slices, -5.0f, 5.0f);
  auto targets = MakeTargets(n, valid, 8);
  targets[0] = 0;
  targets[2] = static_cast<int32_t>(valid - 1);  // the last real column
  Tensor tg = Tensor::FromVectorI32(targets, {n});
  const float dloss = 1.0f / n;

  Tensor fused_losses = ZerosF32({n}), fused_grad = ZerosF32({n, v});
  ASSERT_TRUE(CrossEntropyForwardBackward(Tensor::FromVector(full, {n, v}), tg, fused_losses,
                                          &fused_grad, dloss, valid)
                  .ok());

  std::vector<Tensor> parts;
  std::vector<int64_t> part_valid;
  for (int s = 0; s < slices; ++s) {
    std::vector<float> sl(n * vs);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < vs; ++j) sl[r * vs + j] = full[r * v + s * vs + j];
    }
    parts.push_back(Tensor::FromVector(sl, {n, vs}));
    part_valid.push_back(std::clamp<int64_t>(valid - s * vs, 0, vs));
  }
  std::vector<float> gmax(n, -std::numeric_limits<float>::infinity()), gsum(n, 0.0f),
      gtarget(n, 0.0f);
  for (int s = 0; s < slices; ++s) {
    Tensor mx = ZerosF32({n});
    ASSERT_TRUE(LogitsRowMax(parts[s], mx, part_valid[s]).ok());
    const auto m = Floats(mx);
    for (int64_t r = 0; r < n; ++r) gmax[r] = std::max(gmax[r], m[r]);
  }
  Tensor gmax_t = Tensor::FromVector(gmax, {n});
  for (int s = 0; s < slices; ++s) {
    Tensor se = ZerosF32({n}), tl = ZerosF32({n});
    ASSERT_TRUE(LogitsSumExp(parts[s], gmax_t, se, part_valid[s]).ok());
    ASSERT_TRUE(TargetLogit(parts[s], tg, s * vs, tl).ok());
    const auto sev = Floats(se), tlv = Floats(tl);
    for (int64_t r = 0; r < n; ++r) {
      gsum[r] += sev[r];
      gtarget[r] += tlv[r];
    }
  }
  Tensor gsum_t = Tensor::FromVector(gsum, {n}), gtarget_t = Tensor::FromVector(gtarget, {n});
  std::vector<float> grad(n * v);
  for (int s = 0; s < slices; ++s) {
    Tensor losses = ZerosF32({n});
    Tensor& dl = parts[s];  // gradients written over the slice's logits
    ASSERT_TRUE(VocabParallelCrossEntropyFinish(parts[s], tg, s * vs, gmax_t, gsum_t, gtarget_t,
                                                losses, &dl, dloss, part_valid[s])
                    .ok());
    // Every slice computes the same losses, equal to the fused ones up to the rounding of the
    // per-slice sums of exponentials (a few float ulps).
    EXPECT_TRUE(AllClose(Floats(losses), Floats(fused_losses), 2e-7, 1e-7));
    const auto g = Floats(dl);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < vs; ++j) grad[r * v + s * vs + j] = g[r * vs + j];
    }
  }
  EXPECT_TRUE(AllClose(grad, Floats(fused_grad), 1e-6, 1e-9));
  // Ignored rows and padding are exactly zero in both.
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < v; ++j) {
      if (targets[r] < 0 || j >= valid) {
        ASSERT_EQ(grad[r * v + j], 0.0f) << r << "," << j;
      }
    }
  }
}

TEST(CrossEntropyTest, VocabParallelPiecesMatchFusedOverTwoSlices) { CheckVocabParallel(2, 13, 3); }
// The last of the 4 slices is padding only (valid_vocab 0 there).
TEST(CrossEntropyTest, VocabParallelPiecesMatchFusedOverFourSlices) { CheckVocabParallel(4, 6, 7); }

void ExpectError(const absl::Status& s, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s << " / " << p;
}

TEST(CrossEntropyTest, BadArgumentsAreNamed) {
  const int64_t n = 3, v = 8;
  Tensor logits = ZerosF32({n, v}), losses = ZerosF32({n});
  Tensor tg = Tensor::FromVectorI32({1, -1, 7}, {n});
  EXPECT_TRUE(CrossEntropyForwardBackward(logits, tg, losses, nullptr, 1.0f).ok());
  ExpectError(CrossEntropyForwardBackward(logits, tg, losses, nullptr, 1.0f, 6),
              {"CrossEntropyForwardBackward", "targets[2] = 7", "[0, 6)"});
  ExpectError(CrossEntropyForwardBackward(logits, tg, losses, nullptr, 1.0f, 9),
              {"valid_vocab (9)", "V = 8"});
  ExpectError(CrossEntropyForwardBackward(logits, tg, ZerosF32({n + 1}), nullptr, 1.0f),
              {"CrossEntropyForwardBackward", "losses", "[3]", "[4]"});
  Tensor bad_d = ZerosF32({n, v - 1});
  ExpectError(CrossEntropyForwardBackward(logits, tg, losses, &bad_d, 1.0f), {"dlogits"});
  ExpectError(CrossEntropyForwardBackward(logits, ZerosF32({n}), losses, nullptr, 1.0f),
              {"targets", "i32", "f32"});
  ExpectError(CrossEntropyForwardBackward(ZerosF32({n * v}), tg, losses, nullptr, 1.0f),
              {"logits", "[N, V]"});
  ExpectError(LogitsRowMax(logits, ZerosF32({2})), {"LogitsRowMax", "row_max"});
  ExpectError(LogitsSumExp(logits, ZerosF32({n}), ZerosF32({n}), 10),
              {"LogitsSumExp", "valid_vocab (10)"});
  ExpectError(TargetLogit(logits, tg, -4, ZerosF32({n})), {"TargetLogit", "vocab_start"});
  ExpectError(VocabParallelCrossEntropyFinish(logits, tg, 0, ZerosF32({n}), ZerosF32({n + 2}),
                                              ZerosF32({n}), losses, nullptr, 1.0f),
              {"VocabParallelCrossEntropyFinish", "global_sum_exp"});
}

}  // namespace
}  // namespace loom::ops
