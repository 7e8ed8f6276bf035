#include "ops/cpu/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace loom::ops::cpu {
namespace {

// Elements summed serially into one partial in SumOfSquares; a constant, so the order of
// additions (and hence the result) never depends on how many threads run.
constexpr int64_t kSumChunk = 4096;

inline float Load(float x) { return x; }
inline float Load(bf16 x) { return ToFloat(x); }
inline float Load(f16 x) { return ToFloat(x); }

template <typename D>
D Store(float x);
template <>
float Store<float>(float x) {
  return x;
}
template <>
bf16 Store<bf16>(float x) {
  return ToBf16(x);
}
template <>
f16 Store<f16>(float x) {
  return ToF16(x);
}

}  // namespace

template <typename G, typename C>
void AdamWUpdate(float* params, const G* grads, float* m, float* v, int64_t n, const AdamWParams& p,
                 C* params_copy) {
  // Bias corrections in double: beta^step underflows gracefully and 1 - beta^step keeps its
  // digits for small steps.
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta1), p.step));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta2), p.step));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = Load(grads[i]) * p.grad_scale;
    const float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
    const float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mi / bc1;
    const float v_hat = vi / bc2;
    const float w = params[i];
    const float updated = w - p.lr * (m_hat / (std::sqrt(v_hat) + p.eps) + p.weight_decay * w);
    params[i] = updated;
    if (params_copy != nullptr) params_copy[i] = Store<C>(updated);
  }
}

template <typename T>
double SumOfSquares(const T* x, int64_t n) {
  const int64_t num_chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(num_chunks, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
    const int64_t end = std::min(n, (chunk + 1) * kSumChunk);
    double s = 0.0;
    for (int64_t i = chunk * kSumChunk; i < end; ++i) {
      const double xi = Load(x[i]);
      s += xi * xi;
    }
    partial[chunk] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

template <typename T>
void Scale(T* x, int64_t n, float factor) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] = Store<T>(Load(x[i]) * factor);
}

template <typename S, typename D>
void Cast(const S* src, D* dst, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] = Store<D>(Load(src[i]));
}

template void AdamWUpdate<float, float>(float*, const float*, float*, float*, int64_t,
                                        const AdamWParams&, float*);
template void AdamWUpdate<float, bf16>(float*, const float*, float*, float*, int64_t,
                                       const AdamWParams&, bf16*);
template void AdamWUpdate<bf16, float>(float*, const bf16*, float*, float*, int64_t,
                                       const AdamWParams&, float*);
template void AdamWUpdate<bf16, bf16>(float*, const bf16*, float*, float*, int64_t,
                                      const AdamWParams&, bf16*);

#define LOOM_INSTANTIATE_CAST_FROM(S)                      \
  template void Cast<S, float>(const S*, float*, int64_t); \
  template void Cast<S, bf16>(const S*, bf16*, int64_t);   \
  template void Cast<S, f16>(const S*, f16*, int64_t);
#define LOOM_INSTANTIATE_FLOAT_TYPE(T)                \
  template double SumOfSquares<T>(const T*, int64_t); \
  template void Scale<T>(T*, int64_t, float);         \
  LOOM_INSTANTIATE_CAST_FROM(T)
LOOM_INSTANTIATE_FLOAT_TYPE(float)
LOOM_INSTANTIATE_FLOAT_TYPE(bf16)
LOOM_INSTANTIATE_FLOAT_TYPE(f16)
#undef LOOM_INSTANTIATE_FLOAT_TYPE
#undef LOOM_INSTANTIATE_CAST_FROM

}  // namespace loom::ops::cpu
