// bf16 causal GQA attention on tensor cores (nvcuda::wmma, 16x16x16 bf16 -> fp32), the
// default for bf16 activations. Same tiling and the same deterministic backward split as the
// SIMT kernels in attention.cu (see ops/cuda/attention.h); what changes is that every tile
// product is a WMMA product on bf16 operands in shared memory.
//
// WMMA leaves the mapping of accumulator elements to threads unspecified, so every row-wise
// step (masking, softmax, the output rescale of the online softmax, the multiply by the lse)
// goes through shared memory: fragments are stored as fp32 tiles, threads with a known
// (row, column) mapping do the elementwise math, and probabilities (and dS) are written back
// as bf16 operands for the next product. Rounding P and dS to bf16 before those products is
// what FlashAttention does too; sums and the output accumulator stay fp32.
//
// Shared-memory leading dimensions (elements): bf16 tiles HDP + 8, bf16 P/dS 72, fp32 tiles
// +4. They are what WMMA requires (multiples of 8 bf16 / 4 floats, 32-byte aligned fragment
// starts at 16-row steps) and shift consecutive rows by 4 banks.
#include <cuda_runtime.h>
#include <mma.h>

#include "absl/strings/str_cat.h"
#include "ops/cuda/attention_internal.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "runtime/status.h"

namespace loom::ops::cuda::attn {
namespace {

namespace wmma = nvcuda::wmma;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kLdS = kTile + 4;  // fp32 score tiles
constexpr int kLdP = kTile + 8;  // bf16 probability / dS tiles
template <int HDP>
constexpr int LdH() {  // bf16 [64][HDP] tiles (Q, K, V, dO)
  return HDP + 8;
}
template <int HDP>
constexpr int LdO() {  // fp32 [64][HDP] tiles (PV, staging of dQ / dK / dV)
  return HDP + 4;
}
template <int HDP>
constexpr size_t HalfTileBytes() {
  return sizeof(bf16_t) * kTile * LdH<HDP>();
}
constexpr size_t kScoreBytes = sizeof(float) * kTile * kLdS;
constexpr size_t kProbBytes = sizeof(bf16_t) * kTile * kLdP;
template <int HDP>
constexpr size_t OutTileBytes() {
  return sizeof(float) * kTile * LdO<HDP>();
}

// Copies rows [row0, row0 + 64) x hd of a strided bf16 global matrix into a bf16 shared tile
// (leading dim HDP + 8); rows at or beyond t and columns at or beyond hd become zero.
template <int HDP>
__device__ __forceinline__ void LoadTile(bf16_t* dst, const bf16_t* src, int64_t stride,
                                         int64_t row0, int64_t t, int hd, bool vec) {
  constexpr int kLd = LdH<HDP>();
  if (vec) {  // 8 bf16 (16 bytes) at a time; hd is a multiple of 8 here
    constexpr int kPerRow = HDP / 8;
    for (int idx = threadIdx.x; idx < kTile * kPerRow; idx += blockDim.x) {
      const int r = idx / kPerRow;
      const int c = (idx % kPerRow) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (row0 + r < t && c < hd)
        v = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + c);
      *reinterpret_cast<uint4*>(dst + r * kLd + c) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < kTile * HDP; idx += blockDim.x) {
      const int r = idx / HDP;
      const int c = idx % HDP;
      dst[r * kLd + c] =
          (row0 + r < t && c < hd) ? src[(row0 + r) * stride + c] : __float2bfloat16(0.0f);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Forward: 4 warps, warp w owns query rows [16 w, 16 w + 16) of the block's 64. For the
// elementwise steps lane l of warp w handles row 16 w + l / 2 and the columns of parity l % 2.
// Shared memory: Q, K, V (bf16), S (fp32), P (bf16), PV (fp32).
constexpr int kFwdThreads = 128;

template <int HDP>
constexpr size_t ForwardSmem() {
  return 3 * HalfTileBytes<HDP>() + kScoreBytes + kProbBytes + OutTileBytes<HDP>();
}

template <int HDP>
__global__ void __launch_bounds__(kFwdThreads)
    ForwardKernel(const bf16_t* qkv, bf16_t* out, float* lse, Geometry geo) {
  constexpr int kLdH = LdH<HDP>();
  constexpr int kLdO = LdO<HDP>();
  constexpr int kD = HDP / 16;    // 16-wide slices of the head dim
  constexpr int kCols = HDP / 2;  // output columns per thread
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* qs = reinterpret_cast<bf16_t*>(smem);
  bf16_t* ks = reinterpret_cast<bf16_t*>(smem + HalfTileBytes<HDP>());
  bf16_t* vs = reinterpret_cast<bf16_t*>(smem + 2 * HalfTileBytes<HDP>());
  float* ss = reinterpret_cast<float*>(smem + 3 * HalfTileBytes<HDP>());
  bf16_t* ps = reinterpret_cast<bf16_t*>(smem + 3 * HalfTileBytes<HDP>() + kScoreBytes);
  float* pvs = reinterpret_cast<float*>(smem + 3 * HalfTileBytes<HDP>() + kScoreBytes + kProbBytes);

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t t = geo.t;
  const int num_tiles = static_cast<int>((t + kTile - 1) / kTile);
  const int qt = num_tiles - 1 - static_cast<int>(blockIdx.x);  // longest tiles first
  const int64_t bh = blockIdx.y;
  const int64_t bi = bh / geo.nh;
  const int h = static_cast<int>(bh % geo.nh);
  const int g = h / geo.group;
  const bf16_t* batch = qkv + bi * t * geo.qkv_row;
  const bf16_t* k = batch + static_cast<int64_t>(geo.nh + g) * geo.hd;
  const bf16_t* v = batch + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
  const int64_t q0 = static_cast<int64_t>(qt) * kTile;
  LoadTile<HDP>(qs, batch + static_cast<int64_t>(h) * geo.hd, geo.qkv_row, q0, t, geo.hd, geo.vec);

  const int r = warp * 16 + lane / 2;  // this thread's row in the tile
  const int parity = lane % 2;         // and its columns: parity, parity + 2, ...
  const int64_t row = q0 + r;
  float m = -INFINITY;  // running max (log2 domain)
  float l = 0.0f;       // this thread's half of the running sum
  float o[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) o[j] = 0.0f;

  for (int kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = static_cast<int64_t>(kt) * kTile;
    __syncthreads();  // every warp is done with the previous K and V
    LoadTile<HDP>(ks, k, geo.qkv_row, k0, t, geo.hd, geo.vec);
    LoadTile<HDP>(vs, v, geo.qkv_row, k0, t, geo.hd, geo.vec);
    __syncthreads();

    // S = Q K^T for this warp's 16 rows (K^T is K read column-major).
#pragma unroll
    for (int n = 0; n < kTile / 16; ++n) {
      FragC sf;
      wmma::fill_fragment(sf, 0.0f);
#pragma unroll
      for (int d = 0; d < kD; ++d) {
        FragA qf;
        FragBT kf;
        wmma::load_matrix_sync(qf, qs + warp * 16 * kLdH + d * 16, kLdH);
        wmma::load_matrix_sync(kf, ks + n * 16 * kLdH + d * 16, kLdH);
        wmma::mma_sync(sf, qf, kf, sf);
      }
      wmma::store_matrix_sync(ss + warp * 16 * kLdS + n * 16, sf, kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of row r (a warp touches only its own rows of S, P and PV).
    float sv[kTile / 2];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kTile / 2; ++j) {
      const int c = 2 * j + parity;
      const int64_t col = k0 + c;
      const bool visible =
          col <= row && col < t && (row >= t || attn::SameSegment(geo, bi, row, col));
      sv[j] = visible ? ss[r * kLdS + c] * geo.scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, sv[j]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    // Finite without segments: key k0 is visible to every row of the tile (k0 <= q0 <= row and
    // k0 < t). With segments every key so far may be masked: m stays -inf, exponentials 0.
    const float m_new = fmaxf(m, tile_max);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m - m_use);  // 0 on the first tile
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kTile / 2; ++j) {
      const float p = exp2f(sv[j] - m_use);
      sum += p;
      ps[r * kLdP + 2 * j + parity] = __float2bfloat16(p);
    }
    l = l * alpha + sum;
    m = m_new;
    __syncwarp();

    // PV for this warp's rows, into fresh accumulators; merged below as o = o * alpha + PV.
#pragma unroll
    for (int n = 0; n < kD; ++n) {
      FragC acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        FragA pf;
        FragB vf;
        wmma::load_matrix_sync(pf, ps + warp * 16 * kLdP + kk * 16, kLdP);
        wmma::load_matrix_sync(vf, vs + kk * 16 * kLdH + n * 16, kLdH);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(pvs + warp * 16 * kLdO + n * 16, acc, kLdO, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kCols; ++j) o[j] = o[j] * alpha + pvs[r * kLdO + 2 * j + parity];
  }

  const float total = l + __shfl_xor_sync(0xffffffffu, l, 1);
  if (row < t) {
    const float inv = 1.0f / total;
    bf16_t* orow = out + (bi * t + row) * geo.out_row + static_cast<int64_t>(h) * geo.hd;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const int c = 2 * j + parity;
      if (c < geo.hd) orow[c] = __float2bfloat16(o[j] * inv);
    }
    if (parity == 0) lse[bh * t + row] = m * kLn2 + logf(total);
  }
}

// ---------------------------------------------------------------------------------------
// Backward: 8 warps. Products over a (query tile, key tile) pair: warp w computes S and dP
// for query rows 16 (w % 4) and keys 32 (w / 4) .. +32; the elementwise step (P, dS) is
// spread over all threads; the accumulating products give warp w the output rows
// 16 (w % 4) and the head-dim half w / 4.
constexpr int kBwdThreads = 256;

// S = Q K^T and dP = dO V^T into fp32 tiles ss / dps (rows = queries, columns = keys).
template <int HDP>
__device__ __forceinline__ void ScoresAndDp(const bf16_t* qs, const bf16_t* dos, const bf16_t* ks,
                                            const bf16_t* vs, float* ss, float* dps) {
  constexpr int kLdH = LdH<HDP>();
  const int warp = threadIdx.x / 32;
  const int qg = (warp % 4) * 16;
#pragma unroll
  for (int nn = 0; nn < 2; ++nn) {
    const int n0 = (warp / 4) * 32 + nn * 16;
    FragC sf, dpf;
    wmma::fill_fragment(sf, 0.0f);
    wmma::fill_fragment(dpf, 0.0f);
#pragma unroll
    for (int d = 0; d < HDP / 16; ++d) {
      FragA a;
      FragBT b;
      wmma::load_matrix_sync(a, qs + qg * kLdH + d * 16, kLdH);
      wmma::load_matrix_sync(b, ks + n0 * kLdH + d * 16, kLdH);
      wmma::mma_sync(sf, a, b, sf);
      wmma::load_matrix_sync(a, dos + qg * kLdH + d * 16, kLdH);
      wmma::load_matrix_sync(b, vs + n0 * kLdH + d * 16, kLdH);
      wmma::mma_sync(dpf, a, b, dpf);
    }
    wmma::store_matrix_sync(ss + qg * kLdS + n0, sf, kLdS, wmma::mem_row_major);
    wmma::store_matrix_sync(dps + qg * kLdS + n0, dpf, kLdS, wmma::mem_row_major);
  }
}

// P = exp(S * scale - lse) on the causal part (0 elsewhere) and dS = P * (dP - D), written as
// bf16 tiles (p_b may be null). lse_s is in the log2 domain.
__device__ __forceinline__ void ProbsAndDs(const float* ss, const float* dps, const float* lse_s,
                                           const float* d_s, int64_t q0, int64_t k0,
                                           const Geometry& geo, int64_t bi, bf16_t* p_b,
                                           bf16_t* ds_b) {
  const int64_t t = geo.t;
  const float scale_log2 = geo.scale_log2;
  for (int idx = threadIdx.x; idx < kTile * kTile; idx += blockDim.x) {
    const int r = idx / kTile;
    const int c = idx % kTile;
    const int64_t row = q0 + r;
    const int64_t col = k0 + c;
    const bool visible = row < t && col < t && col <= row && attn::SameSegment(geo, bi, row, col);
    const float p = visible ? exp2f(ss[r * kLdS + c] * scale_log2 - lse_s[r]) : 0.0f;
    if (p_b) p_b[r * kLdP + c] = __float2bfloat16(p);
    ds_b[r * kLdP + c] = __float2bfloat16(p * (dps[r * kLdS + c] - d_s[r]));
  }
}

__device__ __forceinline__ void LoadRowStats(float* lse_s, float* d_s, const float* lse,
                                             const float* dsum, int64_t bh, int64_t q0, int64_t t) {
  for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
    const int64_t row = q0 + r;
    lse_s[r] = row < t ? lse[bh * t + row] * kLog2e : 0.0f;
    d_s[r] = row < t ? dsum[bh * t + row] : 0.0f;
  }
}

// Writes the warp-owned accumulators (rows 16 (w % 4), head-dim half w / 4) times `scale` to
// rows [row0, row0 + 64) x hd of a strided bf16 matrix, through an fp32 staging tile.
template <int HDP>
__device__ __forceinline__ void StoreAccumulators(FragC (&acc)[HDP / 32], float scale, float* stage,
                                                  bf16_t* dst, int64_t stride, int64_t row0,
                                                  int64_t t, int hd) {
  constexpr int kLdO = LdO<HDP>();
  const int warp = threadIdx.x / 32;
  const int rg = (warp % 4) * 16;
#pragma unroll
  for (int nn = 0; nn < HDP / 32; ++nn) {
#pragma unroll
    for (int e = 0; e < acc[nn].num_elements; ++e) acc[nn].x[e] *= scale;
    wmma::store_matrix_sync(stage + rg * kLdO + (warp / 4) * (HDP / 2) + nn * 16, acc[nn], kLdO,
                            wmma::mem_row_major);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kTile * HDP; idx += blockDim.x) {
    const int r = idx / HDP;
    const int c = idx % HDP;
    if (row0 + r < t && c < hd)
      dst[(row0 + r) * stride + c] = __float2bfloat16(stage[r * kLdO + c]);
  }
}

// Shared memory of both backward kernels: four bf16 tiles (K, V, Q, dO), S and dP (fp32; reused
// as the staging tile at the end), P and dS (bf16), lse and D.
template <int HDP>
constexpr size_t BackwardSmem() {
  static_assert(OutTileBytes<HDP>() <= 2 * kScoreBytes, "staging must fit in S + dP");
  return 4 * HalfTileBytes<HDP>() + 2 * kScoreBytes + 2 * kProbBytes + 2 * sizeof(float) * kTile;
}

struct BackwardSmemLayout {
  bf16_t *ks, *vs, *qs, *dos;
  float *ss, *dps;
  bf16_t *p_b, *ds_b;
  float *lse_s, *d_s;
};

template <int HDP>
__device__ __forceinline__ BackwardSmemLayout LayOut(unsigned char* smem) {
  BackwardSmemLayout s;
  size_t off = 0;
  s.ks = reinterpret_cast<bf16_t*>(smem + off);
  off += HalfTileBytes<HDP>();
  s.vs = reinterpret_cast<bf16_t*>(smem + off);
  off += HalfTileBytes<HDP>();
  s.qs = reinterpret_cast<bf16_t*>(smem + off);
  off += HalfTileBytes<HDP>();
  s.dos = reinterpret_cast<bf16_t*>(smem + off);
  off += HalfTileBytes<HDP>();
  s.ss = reinterpret_cast<float*>(smem + off);
  off += kScoreBytes;
  s.dps = reinterpret_cast<float*>(smem + off);
  off += kScoreBytes;
  s.p_b = reinterpret_cast<bf16_t*>(smem + off);
  off += kProbBytes;
  s.ds_b = reinterpret_cast<bf16_t*>(smem + off);
  off += kProbBytes;
  s.lse_s = reinterpret_cast<float*>(smem + off);
  off += sizeof(float) * kTile;
  s.d_s = reinterpret_cast<float*>(smem + off);
  return s;
}

// dK and dV of 64 keys of one kv head, over the query heads of its group and the query tiles
// at or after the key tile. Grid: (key tiles, B * NKV).
// Launch bounds: one block per SM, so ptxas may use up to 255 registers. With the default
// bounds it capped the kernel at 128 registers and spilled (8 bytes at HDP 64, 48 at 128; 48 at
// HDP 64 when asked for two blocks). At HDP 128 shared memory allows one block anyway; at HDP
// 64 the second block is given up for no spills (ops/cuda/kernel_resources.tsv: a GPU run
// should time both, see docs/gpu_cuda.md).
template <int HDP>
__global__ void __launch_bounds__(kBwdThreads, 1)
    BackwardKVKernel(const bf16_t* dout, const bf16_t* qkv, const float* lse, const float* dsum,
                     bf16_t* dqkv, Geometry geo) {
  constexpr int kLdH = LdH<HDP>();
  extern __shared__ __align__(128) unsigned char smem[];
  const BackwardSmemLayout s = LayOut<HDP>(smem);
  const int warp = threadIdx.x / 32;
  const int kg = (warp % 4) * 16;         // this warp's key rows of dK / dV
  const int c0 = (warp / 4) * (HDP / 2);  // and its head-dim half
  const int64_t t = geo.t;
  const int num_tiles = static_cast<int>((t + kTile - 1) / kTile);
  const int kt = blockIdx.x;
  const int64_t bg = blockIdx.y;
  const int64_t bi = bg / geo.nkv;
  const int g = static_cast<int>(bg % geo.nkv);
  const bf16_t* batch = qkv + bi * t * geo.qkv_row;
  const int64_t k0 = static_cast<int64_t>(kt) * kTile;
  LoadTile<HDP>(s.ks, batch + static_cast<int64_t>(geo.nh + g) * geo.hd, geo.qkv_row, k0, t, geo.hd,
                geo.vec);
  LoadTile<HDP>(s.vs, batch + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd, geo.qkv_row, k0,
                t, geo.hd, geo.vec);

  FragC dk[HDP / 32], dv[HDP / 32];
#pragma unroll
  for (int nn = 0; nn < HDP / 32; ++nn) {
    wmma::fill_fragment(dk[nn], 0.0f);
    wmma::fill_fragment(dv[nn], 0.0f);
  }
  for (int h = g * geo.group; h < (g + 1) * geo.group; ++h) {
    const int64_t bh = bi * geo.nh + h;
    const bf16_t* q = batch + static_cast<int64_t>(h) * geo.hd;
    const bf16_t* dob = dout + bi * t * geo.out_row + static_cast<int64_t>(h) * geo.hd;
    for (int qt = kt; qt < num_tiles; ++qt) {
      const int64_t q0 = static_cast<int64_t>(qt) * kTile;
      __syncthreads();  // the previous iteration's tiles are no longer read
      LoadTile<HDP>(s.qs, q, geo.qkv_row, q0, t, geo.hd, geo.vec);
      LoadTile<HDP>(s.dos, dob, geo.out_row, q0, t, geo.hd, geo.vec);
      LoadRowStats(s.lse_s, s.d_s, lse, dsum, bh, q0, t);
      __syncthreads();
      ScoresAndDp<HDP>(s.qs, s.dos, s.ks, s.vs, s.ss, s.dps);
      __syncthreads();
      ProbsAndDs(s.ss, s.dps, s.lse_s, s.d_s, q0, k0, geo, bi, s.p_b, s.ds_b);
      __syncthreads();
      // dV += P^T dO, dK += dS^T Q: P^T / dS^T are P / dS read column-major.
#pragma unroll
      for (int st = 0; st < kTile / 16; ++st) {
        FragAT pf, dsf;
        wmma::load_matrix_sync(pf, s.p_b + st * 16 * kLdP + kg, kLdP);
        wmma::load_matrix_sync(dsf, s.ds_b + st * 16 * kLdP + kg, kLdP);
#pragma unroll
        for (int nn = 0; nn < HDP / 32; ++nn) {
          FragB b;
          wmma::load_matrix_sync(b, s.dos + st * 16 * kLdH + c0 + nn * 16, kLdH);
          wmma::mma_sync(dv[nn], pf, b, dv[nn]);
          wmma::load_matrix_sync(b, s.qs + st * 16 * kLdH + c0 + nn * 16, kLdH);
          wmma::mma_sync(dk[nn], dsf, b, dk[nn]);
        }
      }
    }
  }

  __syncthreads();  // S and dP become the staging tile
  bf16_t* tok = dqkv + bi * t * geo.qkv_row;
  StoreAccumulators<HDP>(dk, geo.scale_log2 / kLog2e, s.ss,
                         tok + static_cast<int64_t>(geo.nh + g) * geo.hd, geo.qkv_row, k0, t,
                         geo.hd);
  __syncthreads();
  StoreAccumulators<HDP>(dv, 1.0f, s.ss, tok + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd,
                         geo.qkv_row, k0, t, geo.hd);
}

// dQ of 64 query rows of one head, over the key tiles up to the causal limit.
// Grid: (query tiles, B * NH), longest first.
template <int HDP>
__global__ void __launch_bounds__(kBwdThreads)
    BackwardQKernel(const bf16_t* dout, const bf16_t* qkv, const float* lse, const float* dsum,
                    bf16_t* dqkv, Geometry geo) {
  constexpr int kLdH = LdH<HDP>();
  extern __shared__ __align__(128) unsigned char smem[];
  const BackwardSmemLayout s = LayOut<HDP>(smem);
  const int warp = threadIdx.x / 32;
  const int qg = (warp % 4) * 16;         // this warp's query rows of dQ
  const int c0 = (warp / 4) * (HDP / 2);  // and its head-dim half
  const int64_t t = geo.t;
  const int num_tiles = static_cast<int>((t + kTile - 1) / kTile);
  const int qt = num_tiles - 1 - static_cast<int>(blockIdx.x);
  const int64_t bh = blockIdx.y;
  const int64_t bi = bh / geo.nh;
  const int h = static_cast<int>(bh % geo.nh);
  const int g = h / geo.group;
  const bf16_t* batch = qkv + bi * t * geo.qkv_row;
  const bf16_t* k = batch + static_cast<int64_t>(geo.nh + g) * geo.hd;
  const bf16_t* v = batch + static_cast<int64_t>(geo.nh + geo.nkv + g) * geo.hd;
  const int64_t q0 = static_cast<int64_t>(qt) * kTile;
  LoadTile<HDP>(s.qs, batch + static_cast<int64_t>(h) * geo.hd, geo.qkv_row, q0, t, geo.hd,
                geo.vec);
  LoadTile<HDP>(s.dos, dout + bi * t * geo.out_row + static_cast<int64_t>(h) * geo.hd, geo.out_row,
                q0, t, geo.hd, geo.vec);
  LoadRowStats(s.lse_s, s.d_s, lse, dsum, bh, q0, t);

  FragC dq[HDP / 32];
#pragma unroll
  for (int nn = 0; nn < HDP / 32; ++nn) wmma::fill_fragment(dq[nn], 0.0f);
  for (int kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = static_cast<int64_t>(kt) * kTile;
    __syncthreads();
    LoadTile<HDP>(s.ks, k, geo.qkv_row, k0, t, geo.hd, geo.vec);
    LoadTile<HDP>(s.vs, v, geo.qkv_row, k0, t, geo.hd, geo.vec);
    __syncthreads();
    ScoresAndDp<HDP>(s.qs, s.dos, s.ks, s.vs, s.ss, s.dps);
    __syncthreads();
    ProbsAndDs(s.ss, s.dps, s.lse_s, s.d_s, q0, k0, geo, bi, nullptr, s.ds_b);
    __syncthreads();
    // dQ += dS K.
#pragma unroll
    for (int st = 0; st < kTile / 16; ++st) {
      FragA a;
      wmma::load_matrix_sync(a, s.ds_b + qg * kLdP + st * 16, kLdP);
#pragma unroll
      for (int nn = 0; nn < HDP / 32; ++nn) {
        FragB b;
        wmma::load_matrix_sync(b, s.ks + st * 16 * kLdH + c0 + nn * 16, kLdH);
        wmma::mma_sync(dq[nn], a, b, dq[nn]);
      }
    }
  }

  __syncthreads();  // S and dP become the staging tile
  StoreAccumulators<HDP>(dq, geo.scale_log2 / kLog2e, s.ss,
                         dqkv + bi * t * geo.qkv_row + static_cast<int64_t>(h) * geo.hd,
                         geo.qkv_row, q0, t, geo.hd);
}

template <typename Kernel>
absl::Status AllowSmem(Kernel kernel, size_t bytes) {
  // Once per kernel, device and size (ops/cuda/context.h), not on every launch.
  int device = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&device));
  return AllowDynamicSmem(device, reinterpret_cast<const void*>(kernel), bytes);
}

}  // namespace

template <int HDP>
absl::Status ForwardTensorCore(const Tensor& qkv, const Geometry& geo, const Tensor& out,
                               const Tensor& lse, cudaStream_t stream) {
  const int64_t tiles = (geo.t + kTile - 1) / kTile;
  constexpr size_t smem = ForwardSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(ForwardKernel<HDP>, smem));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(geo.b * geo.nh));
  ForwardKernel<HDP><<<grid, kFwdThreads, smem, stream>>>(
      qkv.data_as<const bf16_t>(), out.data_as<bf16_t>(), lse.data_as<float>(), geo);
  return CheckLaunch("attention ForwardKernel (tensor cores)");
}

template <int HDP>
absl::Status BackwardTensorCore(const Tensor& dout, const Tensor& qkv, const Tensor& lse,
                                const Tensor& dsum, const Geometry& geo, const Tensor& dqkv,
                                cudaStream_t stream) {
  const int64_t tiles = (geo.t + kTile - 1) / kTile;
  constexpr size_t smem = BackwardSmem<HDP>();
  LOOM_RETURN_IF_ERROR(AllowSmem(BackwardKVKernel<HDP>, smem));
  const dim3 kv_grid(static_cast<unsigned>(tiles), static_cast<unsigned>(geo.b * geo.nkv));
  BackwardKVKernel<HDP><<<kv_grid, kBwdThreads, smem, stream>>>(
      dout.data_as<const bf16_t>(), qkv.data_as<const bf16_t>(), lse.data_as<const float>(),
      dsum.data_as<const float>(), dqkv.data_as<bf16_t>(), geo);
  LOOM_RETURN_IF_ERROR(CheckLaunch("attention BackwardKVKernel (tensor cores)"));
  LOOM_RETURN_IF_ERROR(AllowSmem(BackwardQKernel<HDP>, smem));
  const dim3 q_grid(static_cast<unsigned>(tiles), static_cast<unsigned>(geo.b * geo.nh));
  BackwardQKernel<HDP><<<q_grid, kBwdThreads, smem, stream>>>(
      dout.data_as<const bf16_t>(), qkv.data_as<const bf16_t>(), lse.data_as<const float>(),
      dsum.data_as<const float>(), dqkv.data_as<bf16_t>(), geo);
  return CheckLaunch("attention BackwardQKernel (tensor cores)");
}

template absl::Status ForwardTensorCore<64>(const Tensor&, const Geometry&, const Tensor&,
                                            const Tensor&, cudaStream_t);
template absl::Status ForwardTensorCore<128>(const Tensor&, const Geometry&, const Tensor&,
                                             const Tensor&, cudaStream_t);
template absl::Status BackwardTensorCore<64>(const Tensor&, const Tensor&, const Tensor&,
                                             const Tensor&, const Geometry&, const Tensor&,
                                             cudaStream_t);
template absl::Status BackwardTensorCore<128>(const Tensor&, const Tensor&, const Tensor&,
                                              const Tensor&, const Geometry&, const Tensor&,
                                              cudaStream_t);

}  // namespace loom::ops::cuda::attn
