// "Same result for any thread count": every threaded CPU path run at shapes above its OpenMP
// threshold (ops/cpu/*.cc) with 2 threads gives the 1-thread result bit for bit: LayerNorm and
// RMSNorm forward (plain and fused residual) and backward (including the parallel column
// reduction of the weight-gradient partials), attention forward and backward, AdamW, the sum of
// squares, scale, and the embedding forward and backward; the 2-thread run is repeated, since a
// race shows only when the threads happen to overlap. The other op tests run one thread at
// small shapes, so a race or a thread-dependent summation order would only show up here.
//
// The thresholds this file sizes its shapes by (keep in step with ops/cpu):
//   norm.cc       rows * c >= 2^15 for the row loops; chunks(64 rows) * c >= 2^15 for the
//                 column reduction of the backward
//   attention.cc  b * nh * t * t * hd >= 2^20
//   optimizer.cc  always parallel; SumOfSquares splits into chunks of 4096 elements
//   embedding.cc  always parallel over blocks of 32 channels
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/embedding.h"
#include "ops/cpu/norm.h"
#include "ops/cpu/optimizer.h"

namespace loom::ops::cpu {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

// Runs `fill` (which writes its outputs into the buffers it is given) with 1 OpenMP thread, then
// `repeats` times with 2, each on fresh copies of `outputs`, and expects every 2-thread result to
// be the 1-thread result byte for byte. A race shows only when the threads overlap in time,
// which on a busy 2-core machine they often do not: the repeats make a planted race in the norm
// backward fail reliably (it was caught in about one run of five without them).
using Buffers = std::vector<std::vector<float>>;
void ExpectSameForOneAndTwoThreads(const Buffers& outputs, const std::function<void(Buffers&)>& fill,
                                   const std::vector<std::string>& names, int repeats = 10) {
  const int saved = omp_get_max_threads();
  Buffers one = outputs;
  omp_set_num_threads(1);
  fill(one);
  omp_set_num_threads(2);
  ASSERT_EQ(omp_get_max_threads(), 2);
  for (int rep = 0; rep < repeats; ++rep) {
    Buffers two = outputs;
    fill(two);
    bool same = true;
    for (size_t k = 0; k < outputs.size(); ++k) {
      ASSERT_EQ(one[k].size(), two[k].size());
      size_t diffs = 0, first = 0;
      for (size_t i = 0; i < one[k].size(); ++i) {
        if (std::memcmp(&one[k][i], &two[k][i], sizeof(float)) != 0 && diffs++ == 0) first = i;
      }
      EXPECT_EQ(diffs, 0u) << names[k] << ": " << diffs << " of " << one[k].size()
                           << " elements differ between 1 and 2 threads (2-thread run " << rep + 1
                           << "); first at " << first << ": " << one[k][first] << " vs "
                           << two[k][first];
      same = same && diffs == 0;
    }
    if (!same) break;
  }
  omp_set_num_threads(saved);
}

// 8192 rows of 256: 2^21 elements in the row loops, 128 chunks * 256 = 2^15 in the reduction.
constexpr int64_t kRows = 8192, kC = 256;

// The backwards are where a race would sit (the chunks' partial sums): each fill calls one
// kCallsPerFill times back to back (dweight accumulating; the same sequence on 1 thread), which
// keeps the second thread awake and overlapping, and the 2-thread fill is repeated.
constexpr int kCallsPerFill = 8;
constexpr int kBackwardRepeats = 8;

TEST(ThreadsTest, LayerNormForwardAndBackward) {
  const std::vector<float> x = Random(kRows * kC, 1), w = Random(kC, 2), b = Random(kC, 3);
  const std::vector<float> r = Random(kRows * kC, 4), dout = Random(kRows * kC, 5);
  std::vector<float> out(kRows * kC), mean(kRows), rstd(kRows);
  ExpectSameForOneAndTwoThreads(
      {out, mean, rstd, std::vector<float>(kRows * kC), std::vector<float>(kRows * kC)},
      [&](Buffers& o) {
        LayerNormForward(x.data(), w.data(), b.data(), 1e-5, kRows, kC, o[0].data(), o[1].data(),
                         o[2].data());
        std::vector<float> m(kRows), s(kRows);
        FusedResidualLayerNormForward(x.data(), r.data(), w.data(), b.data(), 1e-5, kRows, kC,
                                      o[3].data(), o[4].data(), m.data(), s.data());
      },
      {"out", "mean", "rstd", "residual", "fused out"});
  LayerNormForward(x.data(), w.data(), b.data(), 1e-5, kRows, kC, out.data(), mean.data(),
                   rstd.data());
  // dweight and dbias accumulate into their (non-zero) starting values.
  ExpectSameForOneAndTwoThreads(
      {std::vector<float>(kRows * kC), Random(kC, 6), Random(kC, 7)},
      [&](Buffers& o) {
        for (int k = 0; k < kCallsPerFill; ++k) {
          LayerNormBackward(dout.data(), x.data(), w.data(), mean.data(), rstd.data(), kRows, kC,
                            o[0].data(), o[1].data(), o[2].data());
        }
      },
      {"dx", "dweight", "dbias"}, kBackwardRepeats);
}

TEST(ThreadsTest, RMSNormForwardAndBackward) {
  const std::vector<float> x = Random(kRows * kC, 11), w = Random(kC, 12);
  const std::vector<float> r = Random(kRows * kC, 13), dout = Random(kRows * kC, 14);
  std::vector<float> out(kRows * kC), rstd(kRows);
  ExpectSameForOneAndTwoThreads(
      {out, rstd, std::vector<float>(kRows * kC), std::vector<float>(kRows * kC)},
      [&](Buffers& o) {
        RMSNormForward(x.data(), w.data(), 1e-5, kRows, kC, o[0].data(), o[1].data());
        std::vector<float> s(kRows);
        FusedResidualRMSNormForward(x.data(), r.data(), w.data(), 1e-5, kRows, kC, o[2].data(),
                                    o[3].data(), s.data());
      },
      {"out", "rstd", "residual", "fused out"});
  RMSNormForward(x.data(), w.data(), 1e-5, kRows, kC, out.data(), rstd.data());
  ExpectSameForOneAndTwoThreads(
      {std::vector<float>(kRows * kC), Random(kC, 15)},
      [&](Buffers& o) {
        for (int k = 0; k < kCallsPerFill; ++k) {
          RMSNormBackward(dout.data(), x.data(), w.data(), rstd.data(), kRows, kC, o[0].data(),
                          o[1].data());
        }
      },
      {"dx", "dweight"}, kBackwardRepeats);
}

TEST(ThreadsTest, AttentionForwardAndBackward) {
  // b * nh * t^2 * hd = 2 * 4 * 160^2 * 16 = 3.3M >= 2^20; grouped (2 kv heads), and t not a
  // multiple of the 64-row query block.
  constexpr int64_t b = 2, t = 160;
  constexpr int nh = 4, nkv = 2, hd = 16;
  const int64_t row = (nh + 2 * nkv) * hd;
  const std::vector<float> qkv = Random(b * t * row, 21), dout = Random(b * t * nh * hd, 22);
  ExpectSameForOneAndTwoThreads(
      {std::vector<float>(b * t * nh * hd), std::vector<float>(b * nh * t),
       std::vector<float>(b * t * row, 7.0f)},
      [&](Buffers& o) {
        AttentionForward(qkv.data(), b, t, nh, nkv, hd, o[0].data(), o[1].data());
        AttentionBackward(dout.data(), qkv.data(), o[0].data(), o[1].data(), b, t, nh, nkv, hd,
                          o[2].data());
      },
      {"out", "lse", "dqkv"});
}

TEST(ThreadsTest, AdamWSumOfSquaresAndScale) {
  constexpr int64_t n = 100003;  // 25 chunks of 4096 and a ragged tail
  const std::vector<float> g = Random(n, 31);
  AdamWParams p;
  p.lr = 1e-3f;
  p.weight_decay = 0.1f;
  p.step = 3;
  p.grad_scale = 0.5f;
  ExpectSameForOneAndTwoThreads(
      {Random(n, 32), Random(n, 33, 0.0f, 0.01f), Random(n, 34, 0.0f, 1e-4f),
       std::vector<float>(2), std::vector<float>(n)},
      [&](Buffers& o) {
        const float* grads = g.data();
        AdamWUpdate<float, float>(o[0].data(), grads, o[1].data(), o[2].data(), n, p, nullptr);
        // The sum of squares is a double: its bytes go into two floats, compared bytewise.
        const double ss = SumOfSquares(o[0].data(), n);
        std::memcpy(o[3].data(), &ss, sizeof(double));
        o[4] = g;
        Scale(o[4].data(), n, 0.37f);
      },
      {"params", "m", "v", "sum of squares", "scaled"});
}

TEST(ThreadsTest, EmbeddingForwardAndBackward) {
  // 4 blocks of 32 channels; tokens repeat so several rows accumulate into one dwte row.
  constexpr int64_t b = 8, t = 64, c = 128, v = 97;
  std::vector<int32_t> tokens(b * t);
  std::mt19937 gen(41);
  for (int32_t& tok : tokens) tok = static_cast<int32_t>(gen() % v);
  const std::vector<float> wte = Random(v * c, 42), wpe = Random(t * c, 43);
  const std::vector<float> dout = Random(b * t * c, 44);
  ExpectSameForOneAndTwoThreads(
      {std::vector<float>(b * t * c), Random(v * c, 45), Random(t * c, 46)},
      [&](Buffers& o) {
        EmbeddingForward(tokens.data(), wte.data(), wpe.data(), o[0].data(), b, t, c, v, 0);
        EmbeddingBackward(tokens.data(), dout.data(), o[1].data(), o[2].data(), b, t, c, v, 0);
      },
      {"out", "dwte", "dwpe"});
}

}  // namespace
}  // namespace loom::ops::cpu
