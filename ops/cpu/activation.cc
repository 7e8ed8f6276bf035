#include "ops/cpu/activation.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

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

namespace {

// GeLU is compute-bound at SSE width (an exp and a division per element), so the float loops
// are compiled for AVX-512 / AVX2 too; each OpenMP thread runs one clone over its chunk.
constexpr int64_t kGeluChunk = 16384;

LOOM_SIMD_CLONES void GeluForwardChunk(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    out[i] = v / (1.0f + ExpF(-2.0f * GeluInner(v)));
  }
}

LOOM_SIMD_CLONES void GeluBackwardChunk(const float* dout, const float* x, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float s = 1.0f / (1.0f + ExpF(-2.0f * GeluInner(v)));
    const float du = kGeluScale<float> * (1.0f + 3.0f * kGeluCubic<float> * v * v);
    dx[i] = dout[i] * (s + 2.0f * v * s * (1.0f - s) * du);
  }
}

}  // namespace

template <typename T>
void GeluForward(const T* x, T* out, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += kGeluChunk)
      GeluForwardChunk(x + c, out + c, std::min(kGeluChunk, n - c));
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) out[i] = GeluValue(x[i]);
  }
}

template <typename T>
void GeluBackward(const T* dout, const T* x, T* dx, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += kGeluChunk) {
      GeluBackwardChunk(dout + c, x + c, dx + c, std::min(kGeluChunk, n - c));
    }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) dx[i] = dout[i] * GeluDerivative(x[i]);
  }
}

namespace {

template <typename T>
LOOM_SIMD_INLINE void SwiGLURowForward(const T* gate, const T* up, T* o, int64_t h) {
  for (int64_t j = 0; j < h; ++j) o[j] = gate[j] * Sigmoid(gate[j]) * up[j];
}

template <typename T>
LOOM_SIMD_INLINE void SwiGLURowBackward(const T* d, const T* gate, const T* up, T* dgate, T* dup,
                                        int64_t h) {
  for (int64_t j = 0; j < h; ++j) {
    const T g = gate[j];
    const T s = Sigmoid(g);
    // d/dg [g * sigmoid(g)] = sigmoid(g) * (1 + g * (1 - sigmoid(g)))
    const T dsilu = s * (T(1) + g * (T(1) - s));
    dgate[j] = d[j] * up[j] * dsilu;
    dup[j] = d[j] * g * s;
  }
}

// Float rows compiled for AVX-512 / AVX2 as well (compute-bound like GeLU).
LOOM_SIMD_CLONES void SwiGLURowForwardF32(const float* gate, const float* up, float* o, int64_t h) {
  SwiGLURowForward(gate, up, o, h);
}
LOOM_SIMD_CLONES void SwiGLURowBackwardF32(const float* d, const float* gate, const float* up,
                                           float* dgate, float* dup, int64_t h) {
  SwiGLURowBackward(d, gate, up, dgate, dup, h);
}

}  // namespace

template <typename T>
void SwiGLUForward(const T* inp, T* out, int64_t rows, int64_t h) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = inp + r * 2 * h;
    if constexpr (std::is_same_v<T, float>) {
      SwiGLURowForwardF32(gate, gate + h, out + r * h, h);
    } else {
      SwiGLURowForward(gate, gate + h, out + r * h, h);
    }
  }
}

template <typename T>
void SwiGLUBackward(const T* dout, const T* inp, T* dinp, int64_t rows, int64_t h) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = inp + r * 2 * h;
    T* dgate = dinp + r * 2 * h;
    if constexpr (std::is_same_v<T, float>) {
      SwiGLURowBackwardF32(dout + r * h, gate, gate + h, dgate, dgate + h, h);
    } else {
      SwiGLURowBackward(dout + r * h, gate, gate + h, dgate, dgate + h, h);
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
