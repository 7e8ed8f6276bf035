#include "ops/cpu/attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/softmax_rows.h"

namespace loom::ops::cpu {
namespace {

// Query rows per task. Smaller blocks skip more of the masked upper triangle, larger ones make
// bigger GEMMs; 64 wastes ~6% at T = 1024 and keeps the GEMMs efficient.
constexpr int64_t kBlock = 64;
// Below this many multiply-adds (B * NH * T^2 * HD) a parallel region costs more than it
// saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 20;

// Row-major GEMM: c = alpha * op(a) @ op(b) + beta * c.
void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// loom links OpenBLAS's OpenMP build (see the top-level CMakeLists.txt): a GEMM called inside
// one of our parallel regions runs on the calling thread, so the tasks below can each call
// sgemm without oversubscribing the cores.
bool RunParallel(int64_t work) { return work >= kMinParallelWork && omp_get_max_threads() > 1; }

// Per-thread scratch that outlives the call: a fresh 256 KiB+ vector per call comes from mmap
// as new zero pages each time, and the page faults cost ~4% of the forward at T = 1024.
// `slot` separates the buffers one thread needs at once.
template <typename T>
T* Scratch(int slot, size_t count) {
  thread_local std::vector<T> buffers[3];
  std::vector<T>& b = buffers[slot];
  if (b.size() < count) b.resize(count);
  return b.data();
}

// Softmax row helpers: the float ones are the vectorised kernels of softmax_rows.h; the double
// ones (gradient checks only) are plain loops with libm's exp.
float MaxOf(const float* row, int64_t n) { return RowMax(row, n); }
double MaxOf(const double* row, int64_t n) {
  double mx = row[0];
  for (int64_t j = 1; j < n; ++j) mx = std::max(mx, row[j]);
  return mx;
}
// ds[j] = p[j] * (ds[j] - d).
void DsRow(const float* p, float* ds, int64_t n, float d) { SoftmaxBackwardRow(p, ds, n, d); }
void DsRow(const double* p, double* ds, int64_t n, double d) {
  for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - d);
}
// row[j] = exp(row[j] - shift) for j < n; returns the sum.
double ExpRow(float* row, int64_t n, float shift) { return ExpInPlaceAndSum(row, n, shift); }
double ExpRow(double* row, int64_t n, double shift) {
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += (row[j] = std::exp(row[j] - shift));
  return sum;
}

struct Layout {
  int64_t t, row, out_row;
  int nh, nkv, hd, group;
  // Pointers to the first token of batch element bi.
  int64_t QOffset(int64_t bi, int h) const { return bi * t * row + static_cast<int64_t>(h) * hd; }
  int64_t KOffset(int64_t bi, int g) const {
    return bi * t * row + static_cast<int64_t>(nh + g) * hd;
  }
  int64_t VOffset(int64_t bi, int g) const {
    return bi * t * row + static_cast<int64_t>(nh + nkv + g) * hd;
  }
  int64_t OOffset(int64_t bi, int h) const {
    return bi * t * out_row + static_cast<int64_t>(h) * hd;
  }
};

// For each of the b*t positions, the first position of its segment (0 without segments).
std::vector<int64_t> SegmentStarts(const int32_t* segments, int64_t b, int64_t t) {
  std::vector<int64_t> start(static_cast<size_t>(segments ? b * t : 0));
  for (int64_t bi = 0; segments && bi < b; ++bi) {
    for (int64_t i = 0; i < t; ++i) {
      const int64_t n = bi * t + i;
      start[n] = (i > 0 && segments[n] == segments[n - 1]) ? start[n - 1] : i;
    }
  }
  return start;
}

Layout MakeLayout(int64_t t, int nh, int nkv, int hd) {
  return Layout{
      t,       static_cast<int64_t>(nh + 2 * nkv) * hd, static_cast<int64_t>(nh) * hd, nh, nkv, hd,
      nh / nkv};
}

}  // namespace

template <typename T>
void AttentionForward(const T* qkv, int64_t b, int64_t t, int nh, int nkv, int hd, T* out, T* lse,
                      const int32_t* segments) {
  const Layout L = MakeLayout(t, nh, nkv, hd);
  const std::vector<int64_t> starts = SegmentStarts(segments, b, t);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t nblocks = (t + kBlock - 1) / kBlock;
  const int64_t tasks = b * nh * nblocks;
  const bool parallel = RunParallel(b * nh * t * t * hd);
#pragma omp parallel if (parallel)
  {
    T* s = Scratch<T>(0, static_cast<size_t>(kBlock * t));
    T* inv_sum = Scratch<T>(1, kBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      // Largest blocks first so the dynamic schedule ends balanced.
      const int64_t qb = nblocks - 1 - task % nblocks;
      const int64_t bh = task / nblocks;
      const int64_t bi = bh / nh;
      const int h = static_cast<int>(bh % nh);
      const int g = h / L.group;
      const int64_t r0 = qb * kBlock;
      const int64_t r1 = std::min(t, r0 + kBlock);
      const int64_t m = r1 - r0;
      const int64_t kn = r1;  // keys visible to the last row of the block
      const T* q = qkv + L.QOffset(bi, h) + r0 * L.row;
      const T* k = qkv + L.KOffset(bi, g);
      const T* v = qkv + L.VOffset(bi, g);
      T* o = out + L.OOffset(bi, h) + r0 * L.out_row;
      T* lse_row = lse + bh * t + r0;

      Gemm(false, true, m, kn, hd, scale, q, L.row, k, L.row, T(0), s, kn);
      for (int64_t i = 0; i < m; ++i) {
        T* srow = s + i * kn;
        const int64_t valid = r0 + i + 1;  // causal: keys 0..r0+i
        const int64_t lo = segments ? starts[bi * t + r0 + i] : 0;  // the segment's first key
        const T mx = MaxOf(srow + lo, valid - lo);
        const double sum = ExpRow(srow + lo, valid - lo, mx);
        std::fill(srow, srow + lo, T(0));
        std::fill(srow + valid, srow + kn, T(0));
        lse_row[i] = static_cast<T>(mx + std::log(sum));
        inv_sum[i] = static_cast<T>(1.0 / sum);
      }
      Gemm(false, false, m, hd, kn, T(1), s, kn, v, L.row, T(0), o, L.out_row);
      for (int64_t i = 0; i < m; ++i) {
        T* orow = o + i * L.out_row;
        for (int d = 0; d < hd; ++d) orow[d] *= inv_sum[i];
      }
    }
  }
}

template <typename T>
void AttentionBackward(const T* dout, const T* qkv, const T* out, const T* lse, int64_t b,
                       int64_t t, int nh, int nkv, int hd, T* dqkv, const int32_t* segments) {
  const Layout L = MakeLayout(t, nh, nkv, hd);
  const std::vector<int64_t> starts = SegmentStarts(segments, b, t);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t nblocks = (t + kBlock - 1) / kBlock;
  const int64_t tasks = b * nkv;
  const bool parallel = RunParallel(b * nh * t * t * hd);
#pragma omp parallel if (parallel)
  {
    T* p = Scratch<T>(0, static_cast<size_t>(kBlock * t));
    T* ds = Scratch<T>(1, static_cast<size_t>(kBlock * t));
    T* dsum = Scratch<T>(2, kBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bi = task / nkv;
      const int g = static_cast<int>(task % nkv);
      const T* k = qkv + L.KOffset(bi, g);
      const T* v = qkv + L.VOffset(bi, g);
      T* dk = dqkv + L.KOffset(bi, g);
      T* dv = dqkv + L.VOffset(bi, g);
      for (int64_t r = 0; r < t; ++r) {
        std::fill(dk + r * L.row, dk + r * L.row + hd, T(0));
        std::fill(dv + r * L.row, dv + r * L.row + hd, T(0));
      }
      for (int h = g * L.group; h < (g + 1) * L.group; ++h) {
        const int64_t bh = bi * nh + h;
        for (int64_t qb = 0; qb < nblocks; ++qb) {
          const int64_t r0 = qb * kBlock;
          const int64_t r1 = std::min(t, r0 + kBlock);
          const int64_t m = r1 - r0;
          const int64_t kn = r1;
          const T* q = qkv + L.QOffset(bi, h) + r0 * L.row;
          const T* o = out + L.OOffset(bi, h) + r0 * L.out_row;
          const T* dob = dout + L.OOffset(bi, h) + r0 * L.out_row;
          T* dq = dqkv + L.QOffset(bi, h) + r0 * L.row;
          const T* lse_row = lse + bh * t + r0;

          // P = exp(scale * q k^T - lse) on the causal part, 0 above the diagonal.
          Gemm(false, true, m, kn, hd, scale, q, L.row, k, L.row, T(0), p, kn);
          for (int64_t i = 0; i < m; ++i) {
            T* prow = p + i * kn;
            const int64_t valid = r0 + i + 1;
            const int64_t lo = segments ? starts[bi * t + r0 + i] : 0;
            ExpRow(prow + lo, valid - lo, lse_row[i]);
            std::fill(prow, prow + lo, T(0));
            std::fill(prow + valid, prow + kn, T(0));
            double acc = 0.0;  // D_i = dO_i . O_i
            for (int d = 0; d < hd; ++d) {
              acc += static_cast<double>(dob[i * L.out_row + d]) * o[i * L.out_row + d];
            }
            dsum[i] = static_cast<T>(acc);
          }
          // dP = dO v^T, then dS = P * (dP - D) in place.
          Gemm(false, true, m, kn, hd, T(1), dob, L.out_row, v, L.row, T(0), ds, kn);
          for (int64_t i = 0; i < m; ++i) DsRow(p + i * kn, ds + i * kn, kn, dsum[i]);
          // dV += P^T dO; dQ = scale * dS k; dK += scale * dS^T q.
          Gemm(true, false, kn, hd, m, T(1), p, kn, dob, L.out_row, T(1), dv, L.row);
          Gemm(false, false, m, hd, kn, scale, ds, kn, k, L.row, T(0), dq, L.row);
          Gemm(true, false, kn, hd, m, scale, ds, kn, q, L.row, T(1), dk, L.row);
        }
      }
    }
  }
}

template void AttentionForward<float>(const float*, int64_t, int64_t, int, int, int, float*, float*,
                                      const int32_t*);
template void AttentionForward<double>(const double*, int64_t, int64_t, int, int, int, double*,
                                       double*, const int32_t*);
template void AttentionBackward<float>(const float*, const float*, const float*, const float*,
                                       int64_t, int64_t, int, int, int, float*, const int32_t*);
template void AttentionBackward<double>(const double*, const double*, const double*, const double*,
                                        int64_t, int64_t, int, int, int, double*, const int32_t*);

}  // namespace loom::ops::cpu
