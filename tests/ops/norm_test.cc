// LayerNorm / RMSNorm / fused residual norms on the CPU: forward against naive double loops,
// double-precision finite-difference checks of every backward, the accumulate/overwrite rules
// and argument errors. (The PyTorch golden fixtures are checked in golden_test.cc.)
#include "ops/norm.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/norm.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Dot;
using ::loom::testing::GradientMatches;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;

std::vector<float> Floats(const Tensor& t) { return *t.ToFloatVector(); }
Tensor F32(const std::vector<float>& v, const Shape& s) { return Tensor::FromVector(v, s); }
Tensor ZerosF32(const Shape& s) { return *Tensor::Zeros(s, DType::kF32, CpuDevice()); }

// Naive double reference: out, mean, rstd of LayerNorm (rms = false) or RMSNorm (rms = true).
void NaiveNorm(const std::vector<float>& x, const std::vector<float>& w,
               const std::vector<float>* b, double eps, int64_t n, int64_t c, bool rms,
               std::vector<double>* out, std::vector<double>* mean, std::vector<double>* rstd) {
  out->assign(n * c, 0.0);
  mean->assign(n, 0.0);
  rstd->assign(n, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    double m = 0.0, ss = 0.0;
    for (int64_t j = 0; j < c; ++j) m += x[r * c + j];
    m /= c;
    if (rms) m = 0.0;
    for (int64_t j = 0; j < c; ++j) ss += (x[r * c + j] - m) * (x[r * c + j] - m);
    const double s = 1.0 / std::sqrt(ss / c + eps);
    (*mean)[r] = m;
    (*rstd)[r] = s;
    for (int64_t j = 0; j < c; ++j) {
      (*out)[r * c + j] = (x[r * c + j] - m) * s * w[j] + (b ? (*b)[j] : 0.0);
    }
  }
}

// Appends the rows where epsilon matters: two with |x| ~ 1e-3 (mean square ~1e-6, RMSNorm's eps
// and a tenth of LayerNorm's) and a constant row of 1e-3 (variance 0: LayerNorm's rstd is
// 1/sqrt(eps)). A norm that drops eps is far off on them, or divides by zero.
constexpr int64_t kEpsRows = 3;
std::vector<float> WithEpsRows(std::vector<float> x, int64_t c, uint64_t seed) {
  for (float v : RandomFloats(2 * c, seed, -2e-3f, 2e-3f)) x.push_back(v);
  for (int64_t j = 0; j < c; ++j) x.push_back(1e-3f);
  return x;
}

TEST(LayerNormTest, ForwardMatchesNaiveLoops) {
  const int64_t n = 5 + kEpsRows, c = 67;  // odd C: no accidental reliance on multiples
  const auto x = WithEpsRows(RandomFloats((n - kEpsRows) * c, 1, -2.0f, 3.0f), c, 6);
  const auto w = RandomFloats(c, 2, 0.5f, 1.5f);
  const auto b = RandomFloats(c, 3);
  Tensor out = ZerosF32({n, c}), mean = ZerosF32({n}), rstd = ZerosF32({n});
  ASSERT_TRUE(
      LayerNormForward(F32(x, {n, c}), F32(w, {c}), F32(b, {c}), 1e-5f, out, mean, rstd).ok());
  std::vector<double> ro, rm, rr;
  NaiveNorm(x, w, &b, 1e-5, n, c, false, &ro, &rm, &rr);
  EXPECT_TRUE(AllClose(Floats(out), ro, 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(Floats(mean), rm, 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(Floats(rstd), rr, 1e-5, 1e-6));
}

TEST(RMSNormTest, ForwardMatchesNaiveLoopsWithLeadingDims) {
  const int64_t b = 3, t = 3, c = 40;
  const auto x = WithEpsRows(RandomFloats((b * t - kEpsRows) * c, 4, -2.0f, 2.0f), c, 7);
  const auto w = RandomFloats(c, 5, 0.5f, 1.5f);
  Tensor out = ZerosF32({b, t, c}), rstd = ZerosF32({b, t});
  ASSERT_TRUE(RMSNormForward(F32(x, {b, t, c}), F32(w, {c}), 1e-6f, out, rstd).ok());
  std::vector<double> ro, rm, rr;
  NaiveNorm(x, w, nullptr, 1e-6, b * t, c, true, &ro, &rm, &rr);
  EXPECT_TRUE(AllClose(Floats(out), ro, 1e-5, 1e-6));
  EXPECT_TRUE(AllClose(Floats(rstd), rr, 1e-5, 1e-6));
}

// L = <out, g>; analytic gradients from the double backward vs central differences.
TEST(LayerNormTest, BackwardMatchesFiniteDifferences) {
  const int64_t n = 3, c = 9;
  const double eps = 1e-5;
  auto x = RandomDoubles(n * c, 10, -2.0, 2.0);
  auto w = RandomDoubles(c, 11, 0.5, 1.5);
  auto b = RandomDoubles(c, 12);
  const auto g = RandomDoubles(n * c, 13);
  auto loss = [&]() {
    std::vector<double> out(n * c), mean(n), rstd(n);
    cpu::LayerNormForward<double>(x.data(), w.data(), b.data(), eps, n, c, out.data(), mean.data(),
                                  rstd.data());
    return Dot(out, g);
  };
  std::vector<double> out(n * c), mean(n), rstd(n);
  cpu::LayerNormForward<double>(x.data(), w.data(), b.data(), eps, n, c, out.data(), mean.data(),
                                rstd.data());
  std::vector<double> dx(n * c, 123.0), dw(c, 0.0), db(c, 0.0);
  cpu::LayerNormBackward<double>(g.data(), x.data(), w.data(), mean.data(), rstd.data(), n, c,
                                 dx.data(), dw.data(), db.data());
  EXPECT_TRUE(GradientMatches(loss, &x, dx));
  EXPECT_TRUE(GradientMatches(loss, &w, dw));
  EXPECT_TRUE(GradientMatches(loss, &b, db));
}

TEST(RMSNormTest, BackwardMatchesFiniteDifferences) {
  const int64_t n = 4, c = 7;
  const double eps = 1e-6;
  auto x = RandomDoubles(n * c, 20, -2.0, 2.0);
  auto w = RandomDoubles(c, 21, 0.5, 1.5);
  const auto g = RandomDoubles(n * c, 22);
  auto loss = [&]() {
    std::vector<double> out(n * c), rstd(n);
    cpu::RMSNormForward<double>(x.data(), w.data(), eps, n, c, out.data(), rstd.data());
    return Dot(out, g);
  };
  std::vector<double> out(n * c), rstd(n);
  cpu::RMSNormForward<double>(x.data(), w.data(), eps, n, c, out.data(), rstd.data());
  std::vector<double> dx(n * c, -7.0), dw(c, 0.0);
  cpu::RMSNormBackward<double>(g.data(), x.data(), w.data(), rstd.data(), n, c, dx.data(),
                               dw.data());
  EXPECT_TRUE(GradientMatches(loss, &x, dx));
  EXPECT_TRUE(GradientMatches(loss, &w, dw));
}

// The fused forwards have no backward of their own: the model differentiates through
// residual_out with the plain norm backward and adds the residual stream's gradient. Check
// that this composition is the gradient of the fused forward w.r.t. a and b, with
// L = <out, g1> + <residual_out, g2>.
TEST(FusedResidualNormTest, GradientsThroughResidualMatchFiniteDifferences) {
  const int64_t n = 3, c = 8;
  const double eps = 1e-5;
  for (bool rms : {false, true}) {
    SCOPED_TRACE(rms ? "rmsnorm" : "layernorm");
    auto a = RandomDoubles(n * c, 30, -1.0, 1.0);
    auto bb = RandomDoubles(n * c, 31, -1.0, 1.0);
    const auto w = RandomDoubles(c, 32, 0.5, 1.5);
    const auto bias = RandomDoubles(c, 33);
    const auto g1 = RandomDoubles(n * c, 34);
    const auto g2 = RandomDoubles(n * c, 35);
    std::vector<double> res(n * c), out(n * c), mean(n), rstd(n);
    auto forward = [&]() {
      if (rms) {
        cpu::FusedResidualRMSNormForward<double>(a.data(), bb.data(), w.data(), eps, n, c,
                                                 res.data(), out.data(), rstd.data());
      } else {
        cpu::FusedResidualLayerNormForward<double>(a.data(), bb.data(), w.data(), bias.data(), eps,
                                                   n, c, res.data(), out.data(), mean.data(),
                                                   rstd.data());
      }
    };
    auto loss = [&]() {
      forward();
      return Dot(out, g1) + Dot(res, g2);
    };
    forward();
    for (int64_t i = 0; i < n * c; ++i) ASSERT_DOUBLE_EQ(res[i], a[i] + bb[i]);
    std::vector<double> dres(n * c), dw(c, 0.0), db(c, 0.0);
    if (rms) {
      cpu::RMSNormBackward<double>(g1.data(), res.data(), w.data(), rstd.data(), n, c, dres.data(),
                                   dw.data());
    } else {
      cpu::LayerNormBackward<double>(g1.data(), res.data(), w.data(), mean.data(), rstd.data(), n,
                                     c, dres.data(), dw.data(), db.data());
    }
    for (int64_t i = 0; i < n * c; ++i) dres[i] += g2[i];
    EXPECT_TRUE(GradientMatches(loss, &a, dres));
    EXPECT_TRUE(GradientMatches(loss, &bb, dres));
  }
}

TEST(FusedResidualNormTest, EqualsAddThenNorm) {
  const int64_t n = 6, c = 33;
  const auto a = RandomFloats(n * c, 40), b = RandomFloats(n * c, 41);
  const auto w = RandomFloats(c, 42, 0.5f, 1.5f), bias = RandomFloats(c, 43);
  std::vector<float> sum(n * c);
  for (int64_t i = 0; i < n * c; ++i) sum[i] = a[i] + b[i];
  Tensor res = ZerosF32({n, c}), out = ZerosF32({n, c}), mean = ZerosF32({n}), rstd = ZerosF32({n});
  ASSERT_TRUE(FusedResidualLayerNormForward(F32(a, {n, c}), F32(b, {n, c}), F32(w, {c}),
                                            F32(bias, {c}), 1e-5f, res, out, mean, rstd)
                  .ok());
  Tensor out2 = ZerosF32({n, c}), mean2 = ZerosF32({n}), rstd2 = ZerosF32({n});
  ASSERT_TRUE(
      LayerNormForward(F32(sum, {n, c}), F32(w, {c}), F32(bias, {c}), 1e-5f, out2, mean2, rstd2)
          .ok());
  EXPECT_EQ(Floats(res), sum);
  EXPECT_EQ(Floats(out), Floats(out2));
  EXPECT_EQ(Floats(mean), Floats(mean2));
  EXPECT_EQ(Floats(rstd), Floats(rstd2));

  Tensor rres = ZerosF32({n, c}), rout = ZerosF32({n, c}), rrstd = ZerosF32({n});
  ASSERT_TRUE(FusedResidualRMSNormForward(F32(a, {n, c}), F32(b, {n, c}), F32(w, {c}), 1e-6f, rres,
                                          rout, rrstd)
                  .ok());
  Tensor rout2 = ZerosF32({n, c}), rrstd2 = ZerosF32({n});
  ASSERT_TRUE(RMSNormForward(F32(sum, {n, c}), F32(w, {c}), 1e-6f, rout2, rrstd2).ok());
  EXPECT_EQ(Floats(rres), sum);
  EXPECT_EQ(Floats(rout), Floats(rout2));
  EXPECT_EQ(Floats(rrstd), Floats(rrstd2));
}

// dweight/dbias accumulate, dx overwrites, and dx may alias dout.
TEST(LayerNormTest, BackwardAccumulatesParamGradsAndMayRunInPlace) {
  const int64_t n = 4, c = 16;
  const auto x = RandomFloats(n * c, 50), w = RandomFloats(c, 51, 0.5f, 1.5f);
  const auto b = RandomFloats(c, 52), dy = RandomFloats(n * c, 53);
  Tensor out = ZerosF32({n, c}), mean = ZerosF32({n}), rstd = ZerosF32({n});
  ASSERT_TRUE(
      LayerNormForward(F32(x, {n, c}), F32(w, {c}), F32(b, {c}), 1e-5f, out, mean, rstd).ok());
  Tensor dx = F32(std::vector<float>(n * c, 99.0f), {n, c});
  Tensor dw = ZerosF32({c}), db = ZerosF32({c});
  ASSERT_TRUE(
      LayerNormBackward(F32(dy, {n, c}), F32(x, {n, c}), F32(w, {c}), mean, rstd, dx, dw, db).ok());
  const auto dw1 = Floats(dw), db1 = Floats(db), dx1 = Floats(dx);
  // Second call, in place (dx is dout): dx identical, parameter grads doubled.
  Tensor dyx = F32(dy, {n, c});
  ASSERT_TRUE(LayerNormBackward(dyx, F32(x, {n, c}), F32(w, {c}), mean, rstd, dyx, dw, db).ok());
  EXPECT_EQ(Floats(dyx), dx1);
  std::vector<float> dw2(c), db2(c);
  for (int64_t j = 0; j < c; ++j) {
    dw2[j] = 2 * dw1[j];
    db2[j] = 2 * db1[j];
  }
  EXPECT_TRUE(AllClose(Floats(dw), dw2, 1e-6, 1e-7));
  EXPECT_TRUE(AllClose(Floats(db), db2, 1e-6, 1e-7));

  Tensor rrstd = ZerosF32({n}), rout = ZerosF32({n, c});
  ASSERT_TRUE(RMSNormForward(F32(x, {n, c}), F32(w, {c}), 1e-6f, rout, rrstd).ok());
  Tensor rdx = ZerosF32({n, c}), rdw = ZerosF32({c});
  ASSERT_TRUE(RMSNormBackward(F32(dy, {n, c}), F32(x, {n, c}), F32(w, {c}), rrstd, rdx, rdw).ok());
  Tensor rdyx = F32(dy, {n, c});
  ASSERT_TRUE(RMSNormBackward(rdyx, F32(x, {n, c}), F32(w, {c}), rrstd, rdyx, rdw).ok());
  EXPECT_EQ(Floats(rdyx), Floats(rdx));
}

// ---- argument errors name the op, the argument and the shapes ----

void ExpectError(const absl::Status& s, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s << " / " << p;
}

TEST(NormErrorsTest, BadArgumentsAreNamed) {
  const int64_t n = 4, c = 8;
  Tensor x = ZerosF32({n, c}), w = ZerosF32({c}), b = ZerosF32({c}), out = ZerosF32({n, c});
  Tensor mean = ZerosF32({n}), rstd = ZerosF32({n});
  ExpectError(LayerNormForward(x, ZerosF32({c + 1}), b, 1e-5f, out, mean, rstd),
              {"LayerNormForward", "weight", "[9]", "[8]"});
  ExpectError(LayerNormForward(x, w, b, 1e-5f, ZerosF32({n, c + 1}), mean, rstd),
              {"LayerNormForward", "out", "[4, 9]"});
  ExpectError(LayerNormForward(x, w, b, 1e-5f, out, ZerosF32({n + 1}), rstd),
              {"LayerNormForward", "mean", "4 elements"});
  ExpectError(LayerNormForward(x, w, b, -1.0f, out, mean, rstd), {"eps"});
  ExpectError(RMSNormForward(x, w, 1e-6f, out, *Tensor::Zeros({n}, DType::kI32, CpuDevice())),
              {"RMSNormForward", "rstd", "f32", "i32"});
  ExpectError(RMSNormBackward(ZerosF32({n, c}), x, w, rstd, ZerosF32({n, c}), ZerosF32({2})),
              {"RMSNormBackward", "dweight"});
  ExpectError(LayerNormBackward(ZerosF32({n + 1, c}), x, w, mean, rstd, ZerosF32({n, c}),
                                ZerosF32({c}), ZerosF32({c})),
              {"LayerNormBackward", "dout"});
  ExpectError(FusedResidualLayerNormForward(x, ZerosF32({n, 2}), w, b, 1e-5f, ZerosF32({n, c}), out,
                                            mean, rstd),
              {"FusedResidualLayerNormForward", "b"});
  ExpectError(FusedResidualRMSNormForward(x, x, w, 1e-5f, ZerosF32({1, c}), out, rstd),
              {"FusedResidualRMSNormForward", "residual_out"});
  Tensor bx = *Tensor::Zeros({n, c}, DType::kBF16, CpuDevice());
  Tensor bo = *Tensor::Zeros({n, c}, DType::kBF16, CpuDevice());
  ExpectError(RMSNormForward(bx, w, 1e-6f, bo, rstd), {"CPU backend", "f32"});
}

}  // namespace
}  // namespace loom::ops
