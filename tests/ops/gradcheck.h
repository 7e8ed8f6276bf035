// Test helpers for the op families: seeded random inputs, central finite differences in double
// precision and element-wise closeness with a readable failure message.
//
// How a gradient check goes: the CPU reference kernels are templates instantiated for float
// (what dispatch uses) and double (what the checks use). A test turns the op's output into the
// scalar loss L = <out, w> for a random w, runs the real backward in double with dout = w, and
// compares every input gradient with NumericGradient() of L. In double the finite differences
// are accurate to ~1e-9, so a tolerance near 1e-6 catches any real mistake.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace loom::testing {

// Deterministic values uniform in [lo, hi) (splitmix64, identical on every platform).
inline std::vector<double> RandomDoubles(size_t n, uint64_t seed, double lo = -1.0,
                                         double hi = 1.0) {
  std::vector<double> out(n);
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const double u = static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    out[i] = lo + (hi - lo) * u;
  }
  return out;
}

inline std::vector<float> RandomFloats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::vector<double> d = RandomDoubles(n, seed, lo, hi);
  return std::vector<float>(d.begin(), d.end());
}

template <typename To, typename From>
std::vector<To> ConvertVector(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// sum_i a[i] * b[i]. With b = w this is the loss L = <out, w>, whose gradient w.r.t. out is w.
inline double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) s += a[i] * b[i];
  return s;
}

// dL/dx[i] by central differences (L(x + h e_i) - L(x - h e_i)) / 2h. `loss` must read *x;
// every entry is restored afterwards.
inline std::vector<double> NumericGradient(const std::function<double()>& loss,
                                           std::vector<double>* x, double h = 1e-6) {
  std::vector<double> grad(x->size());
  for (size_t i = 0; i < x->size(); ++i) {
    const double saved = (*x)[i];
    (*x)[i] = saved + h;
    const double plus = loss();
    (*x)[i] = saved - h;
    const double minus = loss();
    (*x)[i] = saved;
    grad[i] = (plus - minus) / (2.0 * h);
  }
  return grad;
}

// Passes when |actual[i] - expected[i]| <= atol + rtol * |expected[i]| for every i; otherwise
// the message gives the number of bad entries and the worst few.
template <typename A, typename E>
::testing::AssertionResult AllClose(const std::vector<A>& actual, const std::vector<E>& expected,
                                    double rtol, double atol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size mismatch: actual " << actual.size() << " vs expected " << expected.size();
  }
  size_t bad = 0;
  std::string shown;
  double worst = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    const double err = std::fabs(a - e);
    const double allowed = atol + rtol * std::fabs(e);
    if (!(err <= allowed)) {  // also catches NaN
      if (bad < 5) absl::StrAppend(&shown, "\n  [", i, "] actual ", a, " expected ", e);
      ++bad;
      if (err > worst || std::isnan(err)) worst = err;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << actual.size() << " entries differ (rtol " << rtol << ", atol " << atol
         << ", worst abs error " << worst << "):" << shown;
}

// Checks an analytic gradient of `loss` w.r.t. *x against central differences.
inline ::testing::AssertionResult GradientMatches(const std::function<double()>& loss,
                                                  std::vector<double>* x,
                                                  const std::vector<double>& analytic,
                                                  double rtol = 1e-6, double atol = 1e-7,
                                                  double h = 1e-6) {
  return AllClose(analytic, NumericGradient(loss, x, h), rtol, atol);
}

}  // namespace loom::testing
