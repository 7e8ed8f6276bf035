// Philox4x32-10 counter-based random numbers (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC'11), and uniform / normal floats derived from them.
//
// Promise: the value at (seed, index) is a pure function of those two numbers and is bit-for-bit
// the same on the CPU and in a CUDA kernel. The model initialises parameter element i of the
// full (unsharded) tensor from NormalAt(seed, i), so every parallel layout, and every device,
// builds the same model.
//
// How the bit-identity is kept: the core is integer arithmetic; the float part (Box-Muller with
// our own log and sin/cos polynomials) uses only IEEE operations that are correctly rounded on
// both sides (add, mul, div, sqrt, fma). In device code they are the explicit __f*_rn
// intrinsics, which nvcc never fuses and --use_fast_math does not touch; every multiply-add is
// written as an explicit fma, so host compilers that contract a*b+c (-mfma with
// -ffp-contract=fast) find nothing to contract. Host std::fma is exact in software too.
//
// Layout of the stream: element `index` lives in counter block index / 4 (counter words 0..1 =
// the block number, words 2..3 = 0), key = the 64-bit seed. UniformAt takes lane index % 4.
// NormalAt pairs lanes (0,1) and (2,3): one Box-Muller transform of a pair gives the even
// element (r cos) and the odd element (r sin), so a kernel that makes four normals per thread
// calls Philox once (Normal4At) and gets the same values as four NormalAt calls.
//
// This header is C++17 and includes no absl, so .cu files can include it.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#ifndef LOOM_HOST_DEVICE
#ifdef __CUDACC__
#define LOOM_HOST_DEVICE __host__ __device__
#else
#define LOOM_HOST_DEVICE
#endif
#endif

namespace loom {

struct Uint32x4 {
  uint32_t v[4];
};
struct Uint32x2 {
  uint32_t v[2];
};
struct Float4 {
  float v[4];
};

namespace philox_internal {

// Round multipliers and Weyl key increments of Philox4x32 (Random123's published constants).
constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;
constexpr uint32_t kWeyl1 = 0xBB67AE85u;

LOOM_HOST_DEVICE inline void Round(uint32_t c[4], uint32_t k0, uint32_t k1) {
  uint64_t p0 = static_cast<uint64_t>(kMul0) * c[0];
  uint64_t p1 = static_cast<uint64_t>(kMul1) * c[2];
  uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  uint32_t n0 = hi1 ^ c[1] ^ k0;
  uint32_t n2 = hi0 ^ c[3] ^ k1;
  c[0] = n0;
  c[1] = lo1;
  c[2] = n2;
  c[3] = lo0;
}

// Correctly rounded float operations that no compiler may fuse or approximate (see top).
LOOM_HOST_DEVICE inline float Fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
LOOM_HOST_DEVICE inline float Mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
LOOM_HOST_DEVICE inline float Add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
LOOM_HOST_DEVICE inline float Div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
LOOM_HOST_DEVICE inline float Sqrt(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
LOOM_HOST_DEVICE inline uint32_t FloatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}
LOOM_HOST_DEVICE inline float BitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// ln(n * 2^-24) for n in [1, 2^24]; never positive. Writes n = m * 2^e with m in
// [sqrt(1/2), sqrt(2)) and sums e*ln2 + ln(m), ln(m) = 2 atanh(s), s = (m-1)/(m+1), as an odd
// series in s (|s| < 0.172, so six terms are far below float precision).
LOOM_HOST_DEVICE inline float LogUnit24(uint32_t n) {
  uint32_t b = FloatBits(static_cast<float>(n));  // exact: n <= 2^24
  int e = static_cast<int>(b >> 23) - 127;
  uint32_t mant = b & 0x7fffffu;
  if (mant > 0x3504f3u) {  // m > sqrt(2): use m/2 and e+1
    mant |= 0x3f000000u;
    e += 1;
  } else {
    mant |= 0x3f800000u;
  }
  float f = Add(BitsFloat(mant), -1.0f);  // exact (Sterbenz)
  float s = Div(f, Add(2.0f, f));
  float z = Mul(s, s);
  float p = Fma(z, 2.0f / 11.0f, 2.0f / 9.0f);
  p = Fma(z, p, 2.0f / 7.0f);
  p = Fma(z, p, 2.0f / 5.0f);
  p = Fma(z, p, 2.0f / 3.0f);
  p = Fma(z, p, 2.0f);
  float log_m = Mul(s, p);
  return Fma(static_cast<float>(e - 24), 0.693147180559945309f, log_m);
}

// sin and cos of 2*pi*k/2^24 for k in [0, 2^24). The quarter turn is taken off exactly in
// integers, leaving |angle| <= pi/4 for the Taylor polynomials.
LOOM_HOST_DEVICE inline void SinCosTurn24(uint32_t k, float* sin_out, float* cos_out) {
  uint32_t j = (k + (1u << 21)) >> 22;  // nearest quarter turn, 0..4
  int32_t r = static_cast<int32_t>(k) - static_cast<int32_t>(j << 22);  // [-2^21, 2^21)
  float a = Mul(static_cast<float>(r), 3.14159265358979323846f / 8388608.0f);  // r * 2pi/2^24
  float a2 = Mul(a, a);
  float sp = Fma(a2, 1.0f / 362880.0f, -1.0f / 5040.0f);
  sp = Fma(a2, sp, 1.0f / 120.0f);
  sp = Fma(a2, sp, -1.0f / 6.0f);
  float s = Fma(Mul(a, a2), sp, a);
  float cp = Fma(a2, -1.0f / 3628800.0f, 1.0f / 40320.0f);
  cp = Fma(a2, cp, -1.0f / 720.0f);
  cp = Fma(a2, cp, 1.0f / 24.0f);
  cp = Fma(a2, cp, -0.5f);
  float c = Fma(a2, cp, 1.0f);
  switch (j & 3u) {
    case 0: *sin_out = s; *cos_out = c; break;
    case 1: *sin_out = c; *cos_out = -s; break;
    case 2: *sin_out = -s; *cos_out = -c; break;
    default: *sin_out = -c; *cos_out = s; break;
  }
}

// Box-Muller on two 32-bit words: radius from x_r (u in (0, 1], so log is finite and |z| is at
// most sqrt(2*24*ln2) = 5.77), angle from x_t. Returns (r cos t, r sin t).
LOOM_HOST_DEVICE inline void BoxMuller(uint32_t x_r, uint32_t x_t, float* z_even, float* z_odd) {
  float radius = Sqrt(Mul(-2.0f, LogUnit24((x_r >> 8) + 1u)));
  float s, c;
  SinCosTurn24(x_t >> 8, &s, &c);
  *z_even = Mul(radius, c);
  *z_odd = Mul(radius, s);
}

}  // namespace philox_internal

// Philox4x32 with 10 rounds: a bijection of the 128-bit counter for each 64-bit key.
LOOM_HOST_DEVICE inline Uint32x4 Philox4x32(Uint32x4 counter, Uint32x2 key) {
  uint32_t c[4] = {counter.v[0], counter.v[1], counter.v[2], counter.v[3]};
  uint32_t k0 = key.v[0], k1 = key.v[1];
  philox_internal::Round(c, k0, k1);
  for (int i = 1; i < 10; ++i) {
    k0 += philox_internal::kWeyl0;
    k1 += philox_internal::kWeyl1;
    philox_internal::Round(c, k0, k1);
  }
  return Uint32x4{{c[0], c[1], c[2], c[3]}};
}

// The four words of counter block `block` under `seed`.
LOOM_HOST_DEVICE inline Uint32x4 PhiloxBlock(uint64_t seed, uint64_t block) {
  Uint32x4 counter{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
  Uint32x2 key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  return Philox4x32(counter, key);
}

// Top 24 bits of a word as a float in [0, 1); every value is exact, 1.0 is never returned.
LOOM_HOST_DEVICE inline float WordToUniform(uint32_t x) {
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}

// Uniform float in [0, 1) for element `index` of the stream `seed`.
LOOM_HOST_DEVICE inline float UniformAt(uint64_t seed, uint64_t index) {
  return WordToUniform(PhiloxBlock(seed, index >> 2).v[index & 3]);
}

// Standard normal float for element `index` of the stream `seed` (|z| <= 5.77).
LOOM_HOST_DEVICE inline float NormalAt(uint64_t seed, uint64_t index) {
  Uint32x4 x = PhiloxBlock(seed, index >> 2);
  int pair = static_cast<int>((index >> 1) & 1);
  float z_even, z_odd;
  philox_internal::BoxMuller(x.v[2 * pair], x.v[2 * pair + 1], &z_even, &z_odd);
  return (index & 1) ? z_odd : z_even;
}

// N(mean, stddev^2) for element `index`: mean + stddev * NormalAt, as one fma on both sides.
LOOM_HOST_DEVICE inline float NormalAt(uint64_t seed, uint64_t index, float mean,
                                      float stddev) {
  return philox_internal::Fma(stddev, NormalAt(seed, index), mean);
}

// Elements 4*block .. 4*block+3 of the normal stream with one Philox call; equal bit for bit
// to NormalAt on those indices.
LOOM_HOST_DEVICE inline Float4 Normal4At(uint64_t seed, uint64_t block) {
  Uint32x4 x = PhiloxBlock(seed, block);
  Float4 out;
  philox_internal::BoxMuller(x.v[0], x.v[1], &out.v[0], &out.v[1]);
  philox_internal::BoxMuller(x.v[2], x.v[3], &out.v[2], &out.v[3]);
  return out;
}

// Host fill: out[i] = NormalAt(seed, start_index + i, mean, stddev) for i in [0, n). This is how
// a CPU tensor (or one shard of a parameter, with start_index = the shard's global offset) is
// initialised; a CUDA kernel calling NormalAt per element writes the same bits.
void FillNormal(float* out, size_t n, float mean, float stddev, uint64_t seed,
                uint64_t start_index);

// Host fill: out[i] = UniformAt(seed, start_index + i), in [0, 1).
void FillUniform(float* out, size_t n, uint64_t seed, uint64_t start_index);

}  // namespace loom
