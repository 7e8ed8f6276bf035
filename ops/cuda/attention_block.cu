// CUDA block kernels of ring attention (ops/cuda/attention_block.h). The tile scheme, thread
// layout and shared-memory layout are those of the SIMT kernels in attention.cu (whose helpers
// are private to that file, so the few small ones are repeated here); what differs is which
// tiles a CUDA block visits (attention_block_tiles.h), the mask (global positions and segment
// ids instead of row >= column), the log-sum-exp merge into the running output, and that the
// backward kernels add into their gradients instead of writing them.
#include <cuda_runtime.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cuda/attention_block.h"
#include "ops/cuda/attention_block_tiles.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

using block::kTile;
using block::Positions;

constexpr int kThreads =
    256;  // a 16 x 16 grid: thread (ty, tx) owns rows ty + 16 i, cols tx + 16 j
constexpr int kLdP = kTile + 1;  // odd strides keep shared-memory accesses conflict-free
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Geometry of one block-pair call.
struct BlockGeometry {
  int64_t t;           // rows of each block (2 * chunk)
  int hd;              // head dim (<= HDP)
  int nh, nkv, group;  // query heads, kv heads, query heads per kv head
  int64_t qkv_row;     // elements per token of the packed qkv: (nh + 2 nkv) * hd
  int64_t out_row;     // elements per token of out: nh * hd
  float scale_log2;    // log2(e) / sqrt(hd): scores go straight to the exp2 domain
  bool vec;            // 128-bit loads are safe (aligned rows, hd a multiple of the vector)
  Positions qp, kp;    // global positions of the query block's and the key block's rows
  const int32_t* seg;  // [B, seq_len] segment ids by global position, or null
  int64_t seq_len;     // segments' row length
};

// May query row `row` see key row `col` (rows of the two blocks) of batch element bi? Rows past
// t are tile padding and see nothing.
__device__ __forceinline__ bool Visible(const BlockGeometry& geo, int64_t bi, int64_t row,
                                        int64_t col) {
  if (row >= geo.t || col >= geo.t) return false;
  const int64_t qpos = geo.qp.At(row);
  const int64_t kpos = geo.kp.At(col);
  if (kpos > qpos) return false;
  if (geo.seg == nullptr) return true;
  const int32_t* s = geo.seg + bi * geo.seq_len;
  return s[qpos] == s[kpos];
}

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
// (row stride HDP + 1); rows at or beyond t and columns at or beyond hd are zero.
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
// Forward. Grid: (query tiles, B * NH), the last query tiles (the most keys) first. Launch
// bounds as attention.cu's: one block per SM by design, so ptxas may use up to 255 registers.
// Shared memory: Q, K, V tiles [64][HDP + 1] and P [64][65], fp32.
template <typename T, int HDP>
__global__ void __launch_bounds__(kThreads, 1)
    BlockForwardKernel(const T* q_qkv, const T* kv_qkv, T* out, float* lse, BlockGeometry geo,
                       bool first) {
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
  const int qt = block::NumTiles(t) - 1 - static_cast<int>(blockIdx.x);
  const int64_t bh = blockIdx.y;
  const int64_t bi = bh / geo.nh;
  const int h = static_cast<int>(bh % geo.nh);
  const int g = h / geo.group;
  const T* kv = kv_qkv + bi * t * geo.qkv_row;
  const T* k = kv + static_cast<int64_t>(geo.nh + g) * geo.hd;
  const T* v = kv + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
  const int64_t q0 = static_cast<int64_t>(qt) * kTile;
  // Key tiles past the prefix the tile's last row sees hold no visible key for any of its rows.
  const int num_kt = block::KeyTilesFor(geo.qp, geo.kp, t, qt);
  if (num_kt > 0) {
    LoadTile<T, HDP>(qs, q_qkv + bi * t * geo.qkv_row + static_cast<int64_t>(h) * geo.hd,
                     geo.qkv_row, q0, t, geo.hd, geo.vec);
  }

  float o[4][NC];
  Zero(o);
  float m[4], l[4];  // running max (log2 domain; -inf until a visible key) and this thread's sum
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
  }
  for (int kt = 0; kt < num_kt; ++kt) {
    const int64_t k0 = static_cast<int64_t>(kt) * kTile;
    __syncthreads();  // the previous tile's K, V and P are no longer read (and Q is loaded)
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
        const bool visible = Visible(geo, bi, row, k0 + tx + 16 * j);
        s[i][j] = visible ? s[i][j] * geo.scale_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      const float m_new = fmaxf(m[i], RowMax16(tile_max));
      // -inf while every key so far was masked: the exponentials are then all 0.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[i] - m_use);  // 0 while m = -inf (l and o are 0 then)
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

  // The running lse of this thread's rows, read by every lane of a row before the row's lane 0
  // overwrites it (a row's 16 lanes are one half of a warp, so a warp barrier orders them).
  float total[4], lse_old[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    total[i] = RowSum16(l[i]);
    const int64_t row = q0 + ty + 16 * i;
    lse_old[i] = (!first && row < t) ? lse[bh * t + row] : -INFINITY;
  }
  __syncwarp();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = q0 + ty + 16 * i;
    if (row >= t) continue;
    T* orow = out + (bi * t + row) * geo.out_row + static_cast<int64_t>(h) * geo.hd;
    float* lse_row = lse + bh * t + row;
    if (m[i] == -INFINITY) {  // no key of this block is visible to the row
      if (first) {
#pragma unroll
        for (int j = 0; j < NC; ++j) {
          if (tx + 16 * j < geo.hd) orow[tx + 16 * j] = FromF32<T>(0.0f);
        }
        if (tx == 0) *lse_row = -INFINITY;
      }
      continue;
    }
    // This block's lse; o / total is its softmax-weighted V. Merged with the running result,
    // each part is reweighted by its share exp(lse_part - lse_merged) of the merged sum.
    const float lse_b = m[i] * kLn2 + logf(total[i]);
    const float lo = lse_old[i];
    const bool merge = lo != -INFINITY;
    float merged = lse_b, a = 0.0f, c = 1.0f / total[i];
    if (merge) {
      const float mx = fmaxf(lo, lse_b);
      merged = mx + logf(expf(lo - mx) + expf(lse_b - mx));
      a = expf(lo - merged);
      c = expf(lse_b - merged) / total[i];
    }
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int col = tx + 16 * j;
      if (col >= geo.hd) continue;
      const float prev = merge ? ToF32(orow[col]) * a : 0.0f;
      orow[col] = FromF32<T>(prev + o[i][j] * c);
    }
    if (tx == 0) *lse_row = merged;
  }
}

// ---------------------------------------------------------------------------------------
// Backward pre-pass: dsum[bh * t + row] = sum_c dO[row, h, c] * O[row, h, c] (the final
// output's). One warp per (token, head).
template <typename T>
__global__ void BlockRowDotKernel(const T* dout, const T* out, float* dsum, int64_t b, int64_t t,
                                  int nh, int hd) {
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

// The per-row lse (scaled to the log2 domain) and D of query rows [q0, q0 + 64); 0 for padded
// rows (their probabilities are masked to 0).
__device__ __forceinline__ void LoadRowStats(float* lse_s, float* d_s, const float* lse,
                                             const float* dsum, int64_t bh, int64_t q0, int64_t t) {
  for (int r = threadIdx.x; r < kTile; r += kThreads) {
    const int64_t row = q0 + r;
    lse_s[r] = row < t ? lse[bh * t + row] * kLog2e : 0.0f;
    d_s[r] = row < t ? dsum[bh * t + row] : 0.0f;
  }
}

// From S = Q K^T and dP = dO V^T of one (query tile, key tile) pair, in TileMma's thread
// layout (rows = queries, columns = keys): P = exp(S * scale - lse) where visible (the block's
// share of the whole sequence's softmax, since lse is the final one) and dS = P * (dP - D).
// Writes dS to ds_s and, when p_s is given, P to p_s ([64][65] each).
__device__ __forceinline__ void ProbsAndDs(const float (&s)[4][4], const float (&dp)[4][4],
                                           const float* lse_s, const float* d_s, int64_t q0,
                                           int64_t k0, const BlockGeometry& geo, int64_t bi, int ty,
                                           int tx, float* p_s, float* ds_s) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty + 16 * i;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = tx + 16 * j;
      const bool visible = Visible(geo, bi, q0 + r, k0 + c);
      const float p = visible ? exp2f(s[i][j] * geo.scale_log2 - lse_s[r]) : 0.0f;
      if (p_s) p_s[r * kLdP + c] = p;
      ds_s[r * kLdP + c] = p * (dp[i][j] - d_s[r]);
    }
  }
}

// dK / dV. Grid: (key tiles, B * NKV). A CUDA block owns 64 keys of one kv head and loops over
// the query heads of its group and the query tiles that see its keys; at the end it adds its
// sums into dkv_qkv's K and V columns (no other block touches those elements).
// Shared memory: K, V, Q, dO tiles [64][HDP + 1], P and dS [64][65], lse and D [64].
template <typename T, int HDP>
__global__ void __launch_bounds__(kThreads, 1)
    BlockBackwardKVKernel(const T* dout, const T* q_qkv, const T* kv_qkv, const float* lse,
                          const float* dsum, T* dkv_qkv, BlockGeometry geo) {
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
  const int num_tiles = block::NumTiles(t);
  const int kt = blockIdx.x;
  const int qt_first = block::FirstQueryTile(geo.qp, geo.kp, t, kt);
  if (qt_first >= num_tiles) return;  // no query sees these keys: nothing to add (whole block)
  const int64_t bg = blockIdx.y;
  const int64_t bi = bg / geo.nkv;
  const int g = static_cast<int>(bg % geo.nkv);
  const T* qb = q_qkv + bi * t * geo.qkv_row;
  const T* kvb = kv_qkv + bi * t * geo.qkv_row;
  const int64_t k0 = static_cast<int64_t>(kt) * kTile;

  LoadTile<T, HDP>(ks, kvb + static_cast<int64_t>(geo.nh + g) * geo.hd, geo.qkv_row, k0, t, geo.hd,
                   geo.vec);
  LoadTile<T, HDP>(vs, kvb + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd, geo.qkv_row, k0,
                   t, geo.hd, geo.vec);

  float dk[4][NC], dv[4][NC];  // rows = keys ty + 16 i, columns tx + 16 j
  Zero(dk);
  Zero(dv);
  for (int h = g * geo.group; h < (g + 1) * geo.group; ++h) {
    const int64_t bh = bi * geo.nh + h;
    const T* q = qb + static_cast<int64_t>(h) * geo.hd;
    const T* dob = dout + bi * t * geo.out_row + static_cast<int64_t>(h) * geo.hd;
    for (int qt = qt_first; qt < num_tiles; ++qt) {
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
    T* tok = dkv_qkv + (bi * t + key) * geo.qkv_row;
    T* dkrow = tok + static_cast<int64_t>(geo.nh + g) * geo.hd;
    T* dvrow = tok + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int c = tx + 16 * j;
      if (c >= geo.hd) continue;
      dkrow[c] = FromF32<T>(ToF32(dkrow[c]) + dk[i][j] * scale);
      dvrow[c] = FromF32<T>(ToF32(dvrow[c]) + dv[i][j]);
    }
  }
}

// dQ. Grid: (query tiles, B * NH), the last tiles first. A CUDA block owns 64 query rows of one
// head, loops over its visible key tiles and adds its sums into dq_qkv's Q columns.
// Shared memory: Q, dO, K, V tiles [64][HDP + 1], dS [64][65], lse and D [64].
template <typename T, int HDP>
__global__ void __launch_bounds__(kThreads, 1)
    BlockBackwardQKernel(const T* dout, const T* q_qkv, const T* kv_qkv, const float* lse,
                         const float* dsum, T* dq_qkv, BlockGeometry geo) {
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
  const int qt = block::NumTiles(t) - 1 - static_cast<int>(blockIdx.x);
  const int num_kt = block::KeyTilesFor(geo.qp, geo.kp, t, qt);
  if (num_kt == 0) return;  // no key of the block is visible to these rows (whole block)
  const int64_t bh = blockIdx.y;
  const int64_t bi = bh / geo.nh;
  const int h = static_cast<int>(bh % geo.nh);
  const int g = h / geo.group;
  const T* kvb = kv_qkv + bi * t * geo.qkv_row;
  const T* k = kvb + static_cast<int64_t>(geo.nh + g) * geo.hd;
  const T* v = kvb + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
  const int64_t q0 = static_cast<int64_t>(qt) * kTile;

  LoadTile<T, HDP>(qs, q_qkv + bi * t * geo.qkv_row + static_cast<int64_t>(h) * geo.hd, geo.qkv_row,
                   q0, t, geo.hd, geo.vec);
  LoadTile<T, HDP>(dos, dout + bi * t * geo.out_row + static_cast<int64_t>(h) * geo.hd, geo.out_row,
                   q0, t, geo.hd, geo.vec);
  LoadRowStats(lse_s, d_s, lse, dsum, bh, q0, t);

  float dq[4][NC];  // rows = queries ty + 16 i, columns tx + 16 j
  Zero(dq);
  for (int kt = 0; kt < num_kt; ++kt) {
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
    T* dqrow = dq_qkv + (bi * t + row) * geo.qkv_row + static_cast<int64_t>(h) * geo.hd;
#pragma unroll
    for (int j = 0; j < NC; ++j) {
      const int c = tx + 16 * j;
      if (c < geo.hd) dqrow[c] = FromF32<T>(ToF32(dqrow[c]) + dq[i][j] * scale);
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

// Kernels above 48 KiB of dynamic shared memory must opt in (once per kernel, device, size).
template <typename Kernel>
absl::Status AllowSmem(Kernel kernel, size_t bytes) {
  int device = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&device));
  return AllowDynamicSmem(device, reinterpret_cast<const void*>(kernel), bytes);
}

// 128-bit loads need every row start 16-byte aligned: aligned base pointers and a head dim
// that is a whole number of vectors (the row strides are multiples of it).
template <typename T>
bool CanVectorize(int hd, std::initializer_list<const Tensor*> ts) {
  if ((static_cast<size_t>(hd) * sizeof(T)) % 16 != 0) return false;
  for (const Tensor* x : ts) {
    if (!IsAligned(x->data(), 16)) return false;
  }
  return true;
}

Positions ToPositions(const ChunkedPositions& p) { return Positions{p.chunk, p.start0, p.start1}; }

BlockGeometry MakeGeometry(int64_t t, int nh, int nkv, int hd, bool vec, ChunkedPositions qp,
                           ChunkedPositions kp, const Tensor* segments) {
  BlockGeometry g;
  g.t = t;
  g.hd = hd;
  g.nh = nh;
  g.nkv = nkv;
  g.group = nh / nkv;
  g.qkv_row = static_cast<int64_t>(nh + 2 * nkv) * hd;
  g.out_row = static_cast<int64_t>(nh) * hd;
  g.scale_log2 = kLog2e / sqrtf(static_cast<float>(hd));
  g.vec = vec;
  g.qp = ToPositions(qp);
  g.kp = ToPositions(kp);
  g.seg = segments ? segments->data_as<const int32_t>() : nullptr;
  g.seq_len = segments ? segments->dim(1) : 0;
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

template <typename T, int HDP>
absl::Status Forward(const Tensor& q_qkv, const Tensor& kv_qkv, int64_t b, int64_t t, int nh,
                     int nkv, int hd, ChunkedPositions qp, ChunkedPositions kp, bool first,
                     const Tensor& out, const Tensor& lse, const Tensor* segments,
                     cudaStream_t stream) {
  const BlockGeometry geo =
      MakeGeometry(t, nh, nkv, hd, CanVectorize<T>(hd, {&q_qkv, &kv_qkv}), qp, kp, segments);
  const int64_t tiles = block::NumTiles(t);
  LOOM_RETURN_IF_ERROR(CheckGrid(tiles, b * nh, "AttentionBlockForward"));
  constexpr size_t smem = ForwardSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(BlockForwardKernel<T, HDP>, smem));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(b * nh));
  BlockForwardKernel<T, HDP>
      <<<grid, kThreads, smem, stream>>>(q_qkv.data_as<const T>(), kv_qkv.data_as<const T>(),
                                         out.data_as<T>(), lse.data_as<float>(), geo, first);
  return CheckLaunch("BlockForwardKernel");
}

template <typename T, int HDP>
absl::Status Backward(const Tensor& dout, const Tensor& q_qkv, const Tensor& kv_qkv,
                      const Tensor& out, const Tensor& lse, int64_t b, int64_t t, int nh, int nkv,
                      int hd, ChunkedPositions qp, ChunkedPositions kp, const Tensor& dq_qkv,
                      const Tensor& dkv_qkv, const Tensor* segments, cudaStream_t stream) {
  const BlockGeometry geo =
      MakeGeometry(t, nh, nkv, hd, CanVectorize<T>(hd, {&q_qkv, &kv_qkv, &dout}), qp, kp, segments);
  const int64_t tiles = block::NumTiles(t);
  LOOM_RETURN_IF_ERROR(CheckGrid(tiles, b * nh, "AttentionBlockBackward"));

  // D = rowsum(dO * O), [B, NH, T] fp32, the same for every block of the ring (recomputed per
  // block: it costs one read of dO and O). Freed to the caching allocator on return; reuse is
  // ordered after these kernels because every op of the device runs on the same stream.
  LOOM_ASSIGN_OR_RETURN(Tensor dsum, Tensor::Empty(Shape({b, nh, t}), DType::kF32, q_qkv.device()));
  const int64_t rows = b * t * nh;
  const int64_t dot_blocks = (rows + 7) / 8;  // 8 warps per block, a warp per row
  BlockRowDotKernel<T><<<static_cast<unsigned>(dot_blocks), 256, 0, stream>>>(
      dout.data_as<const T>(), out.data_as<const T>(), dsum.data_as<float>(), b, t, nh, hd);
  LOOM_RETURN_IF_ERROR(CheckLaunch("BlockRowDotKernel"));

  constexpr size_t kv_smem = BackwardKVSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(BlockBackwardKVKernel<T, HDP>, kv_smem));
  const dim3 kv_grid(static_cast<unsigned>(tiles), static_cast<unsigned>(b * nkv));
  BlockBackwardKVKernel<T, HDP><<<kv_grid, kThreads, kv_smem, stream>>>(
      dout.data_as<const T>(), q_qkv.data_as<const T>(), kv_qkv.data_as<const T>(),
      lse.data_as<const float>(), dsum.data_as<const float>(), dkv_qkv.data_as<T>(), geo);
  LOOM_RETURN_IF_ERROR(CheckLaunch("BlockBackwardKVKernel"));

  constexpr size_t q_smem = BackwardQSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(BlockBackwardQKernel<T, HDP>, q_smem));
  const dim3 q_grid(static_cast<unsigned>(tiles), static_cast<unsigned>(b * nh));
  BlockBackwardQKernel<T, HDP><<<q_grid, kThreads, q_smem, stream>>>(
      dout.data_as<const T>(), q_qkv.data_as<const T>(), kv_qkv.data_as<const T>(),
      lse.data_as<const float>(), dsum.data_as<const float>(), dq_qkv.data_as<T>(), geo);
  return CheckLaunch("BlockBackwardQKernel");
}

// Calls CALL(T, HDP) for the tensor's dtype and the padded head dim (64 or 128).
#define LOOM_BLOCK_DISPATCH(DTYPE, HD_VALUE, CALL)                                               \
  do {                                                                                           \
    if ((DTYPE) != DType::kF32 && (DTYPE) != DType::kBF16) {                                     \
      return absl::InvalidArgumentError(absl::StrCat("ring attention block: unsupported dtype ", \
                                                     std::string(DTypeName(DTYPE))));            \
    }                                                                                            \
    const bool f32_ = (DTYPE) == DType::kF32;                                                    \
    if ((HD_VALUE) >= 1 && (HD_VALUE) <= 64) return f32_ ? CALL(float, 64) : CALL(bf16_t, 64);   \
    if ((HD_VALUE) > 64 && (HD_VALUE) <= 128) {                                                  \
      return f32_ ? CALL(float, 128) : CALL(bf16_t, 128);                                        \
    }                                                                                            \
    return absl::InvalidArgumentError(absl::StrCat("ring attention block: head dim ", HD_VALUE,  \
                                                   " is not supported (at most 128)"));          \
  } while (0)

}  // namespace

absl::Status AttentionBlockForward(const Tensor& q_qkv, const Tensor& kv_qkv, int64_t b, int64_t t,
                                   int nh, int nkv, int hd, ChunkedPositions q_pos,
                                   ChunkedPositions kv_pos, bool first, const Tensor& out,
                                   const Tensor& lse, const Tensor* segments) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(q_qkv));
  if (b == 0 || t == 0) return absl::OkStatus();
#define LOOM_CALL(T, HDP)                                                                     \
  Forward<T, HDP>(q_qkv, kv_qkv, b, t, nh, nkv, hd, q_pos, kv_pos, first, out, lse, segments, \
                  ctx->stream)
  LOOM_BLOCK_DISPATCH(q_qkv.dtype(), hd, LOOM_CALL);
#undef LOOM_CALL
}

absl::Status AttentionBlockBackward(const Tensor& dout, const Tensor& q_qkv, const Tensor& kv_qkv,
                                    const Tensor& out, const Tensor& lse, int64_t b, int64_t t,
                                    int nh, int nkv, int hd, ChunkedPositions q_pos,
                                    ChunkedPositions kv_pos, const Tensor& dq_qkv,
                                    const Tensor& dkv_qkv, const Tensor* segments) {
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(q_qkv));
  if (b == 0 || t == 0) return absl::OkStatus();
#define LOOM_CALL(T, HDP)                                                                   \
  Backward<T, HDP>(dout, q_qkv, kv_qkv, out, lse, b, t, nh, nkv, hd, q_pos, kv_pos, dq_qkv, \
                   dkv_qkv, segments, ctx->stream)
  LOOM_BLOCK_DISPATCH(q_qkv.dtype(), hd, LOOM_CALL);
#undef LOOM_CALL
}

}  // namespace loom::ops::cuda
