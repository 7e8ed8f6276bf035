#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/attention_internal.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

using attn::Geometry;
using attn::kLn2;
using attn::kLog2e;
using attn::kTile;
using attn::SameSegment;

// Tiles: 64 query rows x 64 keys, 256 threads as a 16 x 16 grid. In every tile product a
// thread owns rows ty + 16 i (i < 4) and columns tx + 16 j (j < NC) of the result, so rows
// are spread over the warps and 16 consecutive lanes share a row (row reductions are 4
// xor-shuffles inside a half-warp).
constexpr int kThreads = 256;
constexpr int kLdP = kTile + 1;  // odd strides keep shared-memory accesses conflict-free

// acc[i][j] += sum_k A(r_i, k) * B(k, c_j) over k < K, for r_i = ty + 16 i, c_j = tx + 16 j.
// A(r, k) = kTransA ? A[k * lda + r] : A[r * lda + k];
// B(k, c) = kTransB ? B[c * ldb + k] : B[k * ldb + c]. All operands in shared memory, fp32.
template <int NC, bool kTransA, bool kTransB>
__device__ __forceinline__ void TileMma(float (&acc)[4][NC], const float* A, int lda,
                                        const float* B, int ldb, int K, int ty, int tx) {
#pragma unroll 4
  for (int k = 0; k < K; ++k) {
    float a[4], b[NC];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      a[i] = kTransA ? A[k * lda + ty + 16 * i] : A[(ty + 16 * i) * lda + k];
#pragma unroll
    for (int j = 0; j < NC; ++j)
      b[j] = kTransB ? B[(tx + 16 * j) * ldb + k] : B[k * ldb + tx + 16 * j];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < NC; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
}

template <int R, int C>
__device__ __forceinline__ void Zero(float (&x)[R][C]) {
#pragma unroll
  for (int i = 0; i < R; ++i) {
#pragma unroll
    for (int j = 0; j < C; ++j) x[i][j] = 0.0f;
  }
}

// Sum / max over the 16 lanes that share a row (lanes differing in their low 4 bits).
__device__ __forceinline__ float RowSum16(float v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ __forceinline__ float RowMax16(float v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Copies rows [row0, row0 + 64) x hd of a strided global matrix into shared memory as fp32
// (row stride HDP + 1); rows at or beyond t and columns at or beyond hd are zero so they add
// nothing to any product.
template <typename T, int HDP>
__device__ __forceinline__ void LoadTile(float* dst, const T* src, int64_t stride, int64_t row0,
                                         int64_t t, int hd, bool vec) {
  constexpr int kLd = HDP + 1;
  if (vec) {  // hd is a multiple of kVec here
    constexpr int kVec = kVec128<T>;
    constexpr int kPerRow = HDP / kVec;
    for (int idx = threadIdx.x; idx < kTile * kPerRow; idx += kThreads) {
      const int r = idx / kPerRow;
      const int c = (idx % kPerRow) * kVec;
      float v[kVec];
      if (row0 + r < t && c < hd) {
        LoadFloats<kVec>(src + (row0 + r) * stride + c, v);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[k] = 0.0f;
      }
#pragma unroll
      for (int k = 0; k < kVec; ++k) dst[r * kLd + c + k] = v[k];
    }
  } else {
    for (int idx = threadIdx.x; idx < kTile * HDP; idx += kThreads) {
      const int r = idx / HDP;
      const int c = idx % HDP;
      dst[r * kLd + c] = (row0 + r < t && c < hd) ? ToF32(src[(row0 + r) * stride + c]) : 0.0f;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Launch bounds (forward and dQ): one block per SM, so ptxas may use up to 255 registers; with
// the default bounds it capped the HDP 128 kernels at 128 and spilled up to 96 bytes, while
// their shared memory allows at most two blocks anyway (ops/cuda/kernel_resources.tsv).
//
// Forward. Grid: (query tiles, B * NH); the last (longest) query tiles are scheduled first.
// Shared memory: Q, K, V tiles [64][HDP + 1] and P [64][65], fp32.
template <typename T, int HDP>
__global__ void __launch_bounds__(kThreads, 1)
    AttentionForwardKernel(const T* qkv, T* out, float* lse, Geometry geo) {
  constexpr int kLd = HDP + 1;
  constexpr int NC = HDP / 16;
  extern __shared__ float smem[];
  float* qs = smem;
  float* ks = qs + kTile * kLd;
  float* vs = ks + kTile * kLd;
  float* ps = vs + kTile * kLd;

  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const int64_t t = geo.t;
  const int num_q_tiles = static_cast<int>((t + kTile - 1) / kTile);
  const int qt = num_q_tiles - 1 - static_cast<int>(blockIdx.x);
  const int64_t bh = blockIdx.y;
  const int64_t bi = bh / geo.nh;
  const int h = static_cast<int>(bh % geo.nh);
  const int g = h / geo.group;
  const T* batch = qkv + bi * t * geo.qkv_row;
  const T* q = batch + static_cast<int64_t>(h) * geo.hd;
  const T* k = batch + static_cast<int64_t>(geo.nh + g) * geo.hd;
  const T* v = batch + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
  const int64_t q0 = static_cast<int64_t>(qt) * kTile;

  LoadTile<T, HDP>(qs, q, geo.qkv_row, q0, t, geo.hd, geo.vec);

  float o[4][NC];
  Zero(o);
  float m[4], l[4];  // running max (log2 domain) and this thread's share of the running sum
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
  }
  // Causal: key tile kt is visible to query tile qt iff kt <= qt. Every row sees key kt * 64
  // of every tile it visits (kt * 64 <= q0 <= row, and kt * 64 < t), so the running max is
  // finite after the first tile; padded rows (>= t) compute harmless values and are not
  // written.
  for (int kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = static_cast<int64_t>(kt) * kTile;
    __syncthreads();  // the previous tile's K, V and P are no longer read
    LoadTile<T, HDP>(ks, k, geo.qkv_row, k0, t, geo.hd, geo.vec);
    LoadTile<T, HDP>(vs, v, geo.qkv_row, k0, t, geo.hd, geo.vec);
    __syncthreads();

    float s[4][4];
    Zero(s);
    TileMma<4, false, true>(s, qs, kLd, ks, kLd, geo.hd, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t row = q0 + ty + 16 * i;
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t col = k0 + tx + 16 * j;
        const bool visible = col <= row && col < t && (row >= t || SameSegment(geo, bi, row, col));
        s[i][j] = visible ? s[i][j] * geo.scale_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      const float m_new = fmaxf(m[i], RowMax16(tile_max));
      // -inf only while segments have masked every key so far: exponentials are then 0.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[i] - m_use);  // 0 on the first tile (m = -inf)
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = exp2f(s[i][j] - m_use);
        sum += p;
        ps[(ty + 16 * i) * kLdP + tx + 16 * j] = p;
      }
      l[i] = l[i] * alpha + sum;
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < NC; ++j) o[i][j] *= alpha;
    }
    __syncthreads();
    TileMma<NC, false, false>(o, ps, kLdP, vs, kLd, kTile, ty, tx);
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float total = RowSum16(l[i]);
    const int64_t row = q0 + ty + 16 * i;
    if (row >= t) continue;
    const float inv = 1.0f / total;
    T* orow = out + (bi * t + row) * geo.out_row + static_cast<int64_t>(h) * geo.hd;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      if (tx + 16 * j < geo.hd) orow[tx + 16 * j] = FromF32<T>(o[i][j] * inv);
    }
    if (tx == 0) lse[bh * t + row] = m[i] * kLn2 + logf(total);
  }
}

// ---------------------------------------------------------------------------------------
// Backward pre-pass: dsum[bh * t + row] = sum_c dO[row, h, c] * O[row, h, c]. One warp per
// (token, head).
template <typename T>
__global__ void AttentionRowDotKernel(const T* dout, const T* out, float* dsum, int64_t b,
                                      int64_t t, int nh, int hd) {
  const int lane = threadIdx.x % 32;
  const int64_t w = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (w >= b * t * nh) return;
  const int h = static_cast<int>(w % nh);
  const int64_t token = w / nh;  // bi * t + row
  const int64_t off = (token * nh + h) * hd;
  float acc = 0.0f;
  for (int c = lane; c < hd; c += 32) acc += ToF32(dout[off + c]) * ToF32(out[off + c]);
  acc = WarpSum(acc);
  if (lane == 0) {
    const int64_t bi = token / t;
    const int64_t row = token % t;
    dsum[(bi * nh + h) * t + row] = acc;
  }
}

// Loads the per-row lse (scaled to the log2 domain) and D of rows [q0, q0 + 64); zero for
// padded rows (their probabilities are masked to 0 anyway).
__device__ __forceinline__ void LoadRowStats(float* lse_s, float* d_s, const float* lse,
                                             const float* dsum, int64_t bh, int64_t q0, int64_t t) {
  for (int r = threadIdx.x; r < kTile; r += kThreads) {
    const int64_t row = q0 + r;
    lse_s[r] = row < t ? lse[bh * t + row] * kLog2e : 0.0f;
    d_s[r] = row < t ? dsum[bh * t + row] : 0.0f;
  }
}

// From S = Q K^T and dP = dO V^T of one (query tile, key tile) pair, in the thread layout of
// TileMma (rows = queries, columns = keys): P = exp(S * scale - lse) on the causal part and
// dS = P * (dP - D). Writes dS to ds_s and, when p_s is given, P to p_s ([64][65] each).
__device__ __forceinline__ void ProbsAndDs(const float (&s)[4][4], const float (&dp)[4][4],
                                           const float* lse_s, const float* d_s, int64_t q0,
                                           int64_t k0, const Geometry& geo, int64_t bi, int ty,
                                           int tx, float* p_s, float* ds_s) {
  const int64_t t = geo.t;
  const float scale_log2 = geo.scale_log2;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty + 16 * i;
    const int64_t row = q0 + r;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = tx + 16 * j;
      const int64_t col = k0 + c;
      const bool visible = row < t && col < t && col <= row && SameSegment(geo, bi, row, col);
      const float p = visible ? exp2f(s[i][j] * scale_log2 - lse_s[r]) : 0.0f;
      if (p_s) p_s[r * kLdP + c] = p;
      ds_s[r * kLdP + c] = p * (dp[i][j] - d_s[r]);
    }
  }
}

// dK / dV. Grid: (key tiles, B * NKV). A block owns 64 keys of one kv head, loops over the
// query heads of its group and the query tiles at or after its key tile.
// Shared memory: K, V, Q, dO tiles [64][HDP + 1], P and dS [64][65], lse and D [64].
// One block per SM as well (the tsv's design): the segment test of packed examples pushed the
// HDP 64 instance past the 128 registers the default bounds allow, into spills.
template <typename T, int HDP>
__global__ void __launch_bounds__(kThreads, 1)
    AttentionBackwardKVKernel(const T* dout, const T* qkv, const float* lse, const float* dsum,
                              T* dqkv, Geometry geo) {
  constexpr int kLd = HDP + 1;
  constexpr int NC = HDP / 16;
  extern __shared__ float smem[];
  float* ks = smem;
  float* vs = ks + kTile * kLd;
  float* qs = vs + kTile * kLd;
  float* dos = qs + kTile * kLd;
  float* p_s = dos + kTile * kLd;
  float* ds_s = p_s + kTile * kLdP;
  float* lse_s = ds_s + kTile * kLdP;
  float* d_s = lse_s + kTile;

  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const int64_t t = geo.t;
  const int num_tiles = static_cast<int>((t + kTile - 1) / kTile);
  const int kt = blockIdx.x;  // small kt = most work, scheduled first
  const int64_t bg = blockIdx.y;
  const int64_t bi = bg / geo.nkv;
  const int g = static_cast<int>(bg % geo.nkv);
  const T* batch = qkv + bi * t * geo.qkv_row;
  const int64_t k0 = static_cast<int64_t>(kt) * kTile;

  LoadTile<T, HDP>(ks, batch + static_cast<int64_t>(geo.nh + g) * geo.hd, geo.qkv_row, k0, t,
                   geo.hd, geo.vec);
  LoadTile<T, HDP>(vs, batch + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd, geo.qkv_row, k0,
                   t, geo.hd, geo.vec);

  float dk[4][NC], dv[4][NC];  // rows = keys ty + 16 i, columns tx + 16 j
  Zero(dk);
  Zero(dv);
  for (int h = g * geo.group; h < (g + 1) * geo.group; ++h) {
    const int64_t bh = bi * geo.nh + h;
    const T* q = batch + static_cast<int64_t>(h) * geo.hd;
    const T* dob = dout + bi * t * geo.out_row + static_cast<int64_t>(h) * geo.hd;
    for (int qt = kt; qt < num_tiles; ++qt) {
      const int64_t q0 = static_cast<int64_t>(qt) * kTile;
      __syncthreads();  // the previous iteration's tiles are no longer read
      LoadTile<T, HDP>(qs, q, geo.qkv_row, q0, t, geo.hd, geo.vec);
      LoadTile<T, HDP>(dos, dob, geo.out_row, q0, t, geo.hd, geo.vec);
      LoadRowStats(lse_s, d_s, lse, dsum, bh, q0, t);
      __syncthreads();

      float s[4][4], dp[4][4];  // rows = queries, columns = keys
      Zero(s);
      Zero(dp);
      TileMma<4, false, true>(s, qs, kLd, ks, kLd, geo.hd, ty, tx);
      TileMma<4, false, true>(dp, dos, kLd, vs, kLd, geo.hd, ty, tx);
      ProbsAndDs(s, dp, lse_s, d_s, q0, k0, geo, bi, ty, tx, p_s, ds_s);
      __syncthreads();
      // dV += P^T dO and dK += dS^T Q (the 1/sqrt(hd) of dK is applied at the end).
      TileMma<NC, true, false>(dv, p_s, kLdP, dos, kLd, kTile, ty, tx);
      TileMma<NC, true, false>(dk, ds_s, kLdP, qs, kLd, kTile, ty, tx);
    }
  }

  const float scale = geo.scale_log2 / kLog2e;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t key = k0 + ty + 16 * i;
    if (key >= t) continue;
    T* tok = dqkv + (bi * t + key) * geo.qkv_row;
    T* dkrow = tok + static_cast<int64_t>(geo.nh + g) * geo.hd;
    T* dvrow = tok + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      if (tx + 16 * j >= geo.hd) continue;
      dkrow[tx + 16 * j] = FromF32<T>(dk[i][j] * scale);
      dvrow[tx + 16 * j] = FromF32<T>(dv[i][j]);
    }
  }
}

// dQ. Grid: (query tiles, B * NH), longest first. A block owns 64 query rows of one head and
// loops over the key tiles up to the causal limit.
// Shared memory: Q, dO, K, V tiles [64][HDP + 1], dS [64][65], lse and D [64].
template <typename T, int HDP>
__global__ void __launch_bounds__(kThreads, 1)
    AttentionBackwardQKernel(const T* dout, const T* qkv, const float* lse, const float* dsum,
                             T* dqkv, Geometry geo) {
  constexpr int kLd = HDP + 1;
  constexpr int NC = HDP / 16;
  extern __shared__ float smem[];
  float* qs = smem;
  float* dos = qs + kTile * kLd;
  float* ks = dos + kTile * kLd;
  float* vs = ks + kTile * kLd;
  float* ds_s = vs + kTile * kLd;
  float* lse_s = ds_s + kTile * kLdP;
  float* d_s = lse_s + kTile;

  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const int64_t t = geo.t;
  const int num_tiles = static_cast<int>((t + kTile - 1) / kTile);
  const int qt = num_tiles - 1 - static_cast<int>(blockIdx.x);
  const int64_t bh = blockIdx.y;
  const int64_t bi = bh / geo.nh;
  const int h = static_cast<int>(bh % geo.nh);
  const int g = h / geo.group;
  const T* batch = qkv + bi * t * geo.qkv_row;
  const T* k = batch + static_cast<int64_t>(geo.nh + g) * geo.hd;
  const T* v = batch + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
  const int64_t q0 = static_cast<int64_t>(qt) * kTile;

  LoadTile<T, HDP>(qs, batch + static_cast<int64_t>(h) * geo.hd, geo.qkv_row, q0, t, geo.hd,
                   geo.vec);
  LoadTile<T, HDP>(dos, dout + bi * t * geo.out_row + static_cast<int64_t>(h) * geo.hd, geo.out_row,
                   q0, t, geo.hd, geo.vec);
  LoadRowStats(lse_s, d_s, lse, dsum, bh, q0, t);

  float dq[4][NC];  // rows = queries ty + 16 i, columns tx + 16 j
  Zero(dq);
  for (int kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = static_cast<int64_t>(kt) * kTile;
    __syncthreads();
    LoadTile<T, HDP>(ks, k, geo.qkv_row, k0, t, geo.hd, geo.vec);
    LoadTile<T, HDP>(vs, v, geo.qkv_row, k0, t, geo.hd, geo.vec);
    __syncthreads();
    float s[4][4], dp[4][4];
    Zero(s);
    Zero(dp);
    TileMma<4, false, true>(s, qs, kLd, ks, kLd, geo.hd, ty, tx);
    TileMma<4, false, true>(dp, dos, kLd, vs, kLd, geo.hd, ty, tx);
    ProbsAndDs(s, dp, lse_s, d_s, q0, k0, geo, bi, ty, tx, nullptr, ds_s);
    __syncthreads();
    TileMma<NC, false, false>(dq, ds_s, kLdP, ks, kLd, kTile, ty, tx);  // dQ += dS K
  }

  const float scale = geo.scale_log2 / kLog2e;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = q0 + ty + 16 * i;
    if (row >= t) continue;
    T* dqrow = dqkv + (bi * t + row) * geo.qkv_row + static_cast<int64_t>(h) * geo.hd;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      if (tx + 16 * j < geo.hd) dqrow[tx + 16 * j] = FromF32<T>(dq[i][j] * scale);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Host side.

template <int HDP>
constexpr size_t ForwardSmem() {
  return sizeof(float) * (3 * kTile * (HDP + 1) + kTile * kLdP);
}
template <int HDP>
constexpr size_t BackwardKVSmem() {
  return sizeof(float) * (4 * kTile * (HDP + 1) + 2 * kTile * kLdP + 2 * kTile);
}
template <int HDP>
constexpr size_t BackwardQSmem() {
  return sizeof(float) * (4 * kTile * (HDP + 1) + kTile * kLdP + 2 * kTile);
}

// Kernels above 48 KiB of dynamic shared memory must opt in (Hopper allows 227 KiB).
template <typename Kernel>
absl::Status AllowSmem(Kernel kernel, size_t bytes) {
  // Once per kernel, device and size (ops/cuda/context.h), not on every launch.
  int device = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&device));
  return AllowDynamicSmem(device, reinterpret_cast<const void*>(kernel), bytes);
}

// 128-bit loads need every row start 16-byte aligned: aligned base pointers and a head dim
// that is a whole number of vectors (the row strides are multiples of it).
template <typename T>
bool CanVectorize(int hd, std::initializer_list<const Tensor*> ts) {
  if ((static_cast<size_t>(hd) * sizeof(T)) % 16 != 0) return false;
  for (const Tensor* t : ts) {
    if (!IsAligned(t->data(), 16)) return false;
  }
  return true;
}

Geometry MakeGeometry(int64_t b, int64_t t, int nh, int nkv, int hd, bool vec,
                      const Tensor* segments) {
  Geometry g;
  g.seg = segments ? segments->data_as<const int32_t>() : nullptr;
  g.b = b;
  g.t = t;
  g.hd = hd;
  g.nh = nh;
  g.nkv = nkv;
  g.group = nh / nkv;
  g.qkv_row = static_cast<int64_t>(nh + 2 * nkv) * hd;
  g.out_row = static_cast<int64_t>(nh) * hd;
  g.scale_log2 = kLog2e / sqrtf(static_cast<float>(hd));
  g.vec = vec;
  return g;
}

absl::Status CheckGrid(int64_t tiles, int64_t y, const char* what) {
  if (tiles > INT32_MAX || y > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": grid of ", tiles, " x ", y,
                     " blocks exceeds the CUDA limits (B * heads must be at most 65535)"));
  }
  return absl::OkStatus();
}

// The kernel family for bf16: tensor cores unless LOOM_ATTENTION_KERNEL=simt was set at
// start-up or a test chose otherwise.
std::atomic<Bf16AttentionKernel>& Bf16Kernel() {
  static std::atomic<Bf16AttentionKernel> kernel{[] {
    const char* env = std::getenv("LOOM_ATTENTION_KERNEL");
    return env != nullptr && std::string(env) == "simt" ? Bf16AttentionKernel::kSimt
                                                        : Bf16AttentionKernel::kTensorCore;
  }()};
  return kernel;
}

template <typename T>
bool UseTensorCores() {
  return std::is_same_v<T, bf16_t> && Bf16Kernel().load() == Bf16AttentionKernel::kTensorCore;
}

template <typename T, int HDP>
absl::Status Forward(const Tensor& qkv, int64_t b, int64_t t, int nh, int nkv, int hd,
                     const Tensor& out, const Tensor& lse, const Tensor* segments,
                     cudaStream_t stream) {
  const Geometry geo = MakeGeometry(b, t, nh, nkv, hd, CanVectorize<T>(hd, {&qkv}), segments);
  const int64_t tiles = (t + kTile - 1) / kTile;
  LOOM_RETURN_IF_ERROR(CheckGrid(tiles, b * nh, "AttentionForward"));
  if (UseTensorCores<T>()) return attn::ForwardTensorCore<HDP>(qkv, geo, out, lse, stream);
  constexpr size_t smem = ForwardSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(AttentionForwardKernel<T, HDP>, smem));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(b * nh));
  AttentionForwardKernel<T, HDP><<<grid, kThreads, smem, stream>>>(
      qkv.data_as<const T>(), out.data_as<T>(), lse.data_as<float>(), geo);
  return CheckLaunch("AttentionForwardKernel");
}

template <typename T, int HDP>
absl::Status Backward(const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                      int64_t b, int64_t t, int nh, int nkv, int hd, const Tensor& dqkv,
                      const Tensor* segments, cudaStream_t stream) {
  const Geometry geo =
      MakeGeometry(b, t, nh, nkv, hd, CanVectorize<T>(hd, {&qkv, &dout}), segments);
  const int64_t tiles = (t + kTile - 1) / kTile;
  LOOM_RETURN_IF_ERROR(CheckGrid(tiles, b * nh, "AttentionBackward"));

  // D = rowsum(dO * O), [B, NH, T] fp32. Freed to the caching allocator on return; reuse is
  // ordered after these kernels because every op of the device runs on the same stream.
  LOOM_ASSIGN_OR_RETURN(Tensor dsum, Tensor::Empty(Shape({b, nh, t}), DType::kF32, qkv.device()));
  const int64_t rows = b * t * nh;
  const int64_t dot_blocks = (rows + 7) / 8;  // 8 warps per block, a warp per row
  AttentionRowDotKernel<T><<<static_cast<unsigned>(dot_blocks), 256, 0, stream>>>(
      dout.data_as<const T>(), out.data_as<const T>(), dsum.data_as<float>(), b, t, nh, hd);
  LOOM_RETURN_IF_ERROR(CheckLaunch("AttentionRowDotKernel"));
  if (UseTensorCores<T>()) {
    return attn::BackwardTensorCore<HDP>(dout, qkv, lse, dsum, geo, dqkv, stream);
  }

  constexpr size_t kv_smem = BackwardKVSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(AttentionBackwardKVKernel<T, HDP>, kv_smem));
  const dim3 kv_grid(static_cast<unsigned>(tiles), static_cast<unsigned>(b * nkv));
  AttentionBackwardKVKernel<T, HDP><<<kv_grid, kThreads, kv_smem, stream>>>(
      dout.data_as<const T>(), qkv.data_as<const T>(), lse.data_as<const float>(),
      dsum.data_as<const float>(), dqkv.data_as<T>(), geo);
  LOOM_RETURN_IF_ERROR(CheckLaunch("AttentionBackwardKVKernel"));

  constexpr size_t q_smem = BackwardQSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(AttentionBackwardQKernel<T, HDP>, q_smem));
  const dim3 q_grid(static_cast<unsigned>(tiles), static_cast<unsigned>(b * nh));
  AttentionBackwardQKernel<T, HDP><<<q_grid, kThreads, q_smem, stream>>>(
      dout.data_as<const T>(), qkv.data_as<const T>(), lse.data_as<const float>(),
      dsum.data_as<const float>(), dqkv.data_as<T>(), geo);
  return CheckLaunch("AttentionBackwardQKernel");
}

// Calls CALL(T, HDP) for the tensor's dtype and the padded head dim (64 or 128).
#define LOOM_ATTENTION_DISPATCH(DTYPE, HD_VALUE, CALL)                                         \
  do {                                                                                         \
    if ((DTYPE) != DType::kF32 && (DTYPE) != DType::kBF16) {                                   \
      return absl::InvalidArgumentError(                                                       \
          absl::StrCat("attention: unsupported dtype ", std::string(DTypeName(DTYPE))));       \
    }                                                                                          \
    const bool f32_ = (DTYPE) == DType::kF32;                                                  \
    if ((HD_VALUE) >= 1 && (HD_VALUE) <= 64) return f32_ ? CALL(float, 64) : CALL(bf16_t, 64); \
    if ((HD_VALUE) > 64 && (HD_VALUE) <= 128) {                                                \
      return f32_ ? CALL(float, 128) : CALL(bf16_t, 128);                                      \
    }                                                                                          \
    return absl::InvalidArgumentError(                                                         \
        absl::StrCat("attention: head dim ", HD_VALUE, " is not supported (at most 128)"));    \
  } while (0)

}  // namespace

void SetBf16AttentionKernel(Bf16AttentionKernel kernel) { Bf16Kernel().store(kernel); }
Bf16AttentionKernel GetBf16AttentionKernel() { return Bf16Kernel().load(); }

absl::Status AttentionForward(const Tensor& qkv, int64_t b, int64_t t, int nh, int nkv, int hd,
                              const Tensor& out, const Tensor& lse, const Tensor* segments) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(qkv));
  if (b == 0 || t == 0) return absl::OkStatus();
#define LOOM_CALL(T, HDP) Forward<T, HDP>(qkv, b, t, nh, nkv, hd, out, lse, segments, ctx->stream)
  LOOM_ATTENTION_DISPATCH(qkv.dtype(), hd, LOOM_CALL);
#undef LOOM_CALL
}

absl::Status AttentionBackward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                               const Tensor& lse, int64_t b, int64_t t, int nh, int nkv, int hd,
                               const Tensor& dqkv, const Tensor* segments) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(qkv));
  if (b == 0 || t == 0) return absl::OkStatus();
#define LOOM_CALL(T, HDP) \
  Backward<T, HDP>(dout, qkv, out, lse, b, t, nh, nkv, hd, dqkv, segments, ctx->stream)
  LOOM_ATTENTION_DISPATCH(qkv.dtype(), hd, LOOM_CALL);
#undef LOOM_CALL
}

}  // namespace loom::ops::cuda
