#include "ops/cpu/activation.h"

#include <cmath>

#include "ops/cpu/fast_exp.h"
#include "ops/cpu/simd_clones.h"

namespace loom::ops::cpu {
namespace {

template <typename T>
constexpr T kGeluScale = T(0.7978845608028654);  // sqrt(2 / pi)
template <typename T>
constexpr T kGeluCubic = T(0.044715);

template <typename T>
LOOM_SIMD_INLINE T Sigmoid(T x) {
  return T(1) / (T(1) + Exp(-x));
}

// GeLU through the sigmoid: 0.5 (1 + tanh(u)) == sigmoid(2u) and 0.5 (1 - tanh(u)^2) ==
// 2 s (1 - s), which needs one exp and no tanh (and has no cancellation near 0).
template <typename T>
LOOM_SIMD_INLINE T GeluInner(T x) {
  return kGeluScale<T> * (x + kGeluCubic<T> * x * x * x);
}

}  // namespace

template <typename T>
T GeluValue(T x) {
  return x * Sigmoid(T(2) * GeluInner(x));
}

template <typename T>
T GeluDerivative(T x) {
  const T s = Sigmoid(T(2) * GeluInner(x));
  const T du = kGeluScale<T> * (T(1) + T(3) * kGeluCubic<T> * x * x);
  return s + T(2) * x * s * (T(1) - s) * du;
}

template <typename T>
void GeluForward(const T* x, T* out, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = GeluValue(x[i]);
}

template <typename T>
void GeluBackward(const T* dout, const T* x, T* dx, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = dout[i] * GeluDerivative(x[i]);
}

template <typename T>
void SwiGLUForward(const T* inp, T* out, int64_t rows, int64_t h) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = inp + r * 2 * h;
    const T* up = gate + h;
    T* o = out + r * h;
    for (int64_t j = 0; j < h; ++j) o[j] = gate[j] * Sigmoid(gate[j]) * up[j];
  }
}

template <typename T>
void SwiGLUBackward(const T* dout, const T* inp, T* dinp, int64_t rows, int64_t h) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = inp + r * 2 * h;
    const T* up = gate + h;
    const T* d = dout + r * h;
    T* dgate = dinp + r * 2 * h;
    T* dup = dgate + h;
    for (int64_t j = 0; j < h; ++j) {
      const T g = gate[j];
      const T s = Sigmoid(g);
      // d/dg [g * sigmoid(g)] = sigmoid(g) * (1 + g * (1 - sigmoid(g)))
      const T dsilu = s * (T(1) + g * (T(1) - s));
      const T u = up[j];
      dgate[j] = d[j] * u * dsilu;
      dup[j] = d[j] * g * s;
    }
  }
}

template <typename T>
void Add(const T* a, const T* b, T* out, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

#define LOOM_INSTANTIATE_ACTIVATION(T)                                       \
  template T GeluValue<T>(T);                                                \
  template T GeluDerivative<T>(T);                                           \
  template void GeluForward<T>(const T*, T*, int64_t);                       \
  template void GeluBackward<T>(const T*, const T*, T*, int64_t);            \
  template void SwiGLUForward<T>(const T*, T*, int64_t, int64_t);            \
  template void SwiGLUBackward<T>(const T*, const T*, T*, int64_t, int64_t); \
  template void Add<T>(const T*, const T*, T*, int64_t);
LOOM_INSTANTIATE_ACTIVATION(float)
LOOM_INSTANTIATE_ACTIVATION(double)
#undef LOOM_INSTANTIATE_ACTIVATION

}  // namespace loom::ops::cpu
