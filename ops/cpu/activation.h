// CPU reference for ops/activation.h: OpenMP loops over flat buffers. Templates on the
// element type (float for dispatch, double for the gradient checks).
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// GPT-2's GeLU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) and its derivative.
template <typename T>
T GeluValue(T x);
template <typename T>
T GeluDerivative(T x);

template <typename T>
void GeluForward(const T* x, T* out, int64_t n);
// dx = dout * GeLU'(x) (overwrite).
template <typename T>
void GeluBackward(const T* dout, const T* x, T* dx, int64_t n);

// inp: [rows, 2h], gate in columns [0, h), up in [h, 2h); out: [rows, h] = silu(gate) * up.
template <typename T>
void SwiGLUForward(const T* inp, T* out, int64_t rows, int64_t h);
// dinp: [rows, 2h] (overwrite).
template <typename T>
void SwiGLUBackward(const T* dout, const T* inp, T* dinp, int64_t rows, int64_t h);

// out = a + b; out may alias a or b.
template <typename T>
void Add(const T* a, const T* b, T* out, int64_t n);

}  // namespace loom::ops::cpu
