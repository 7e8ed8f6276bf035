#include "ops/cpu/attention_block.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/cpu/softmax_rows.h"

namespace loom::ops::cpu {
namespace {

constexpr int64_t kBlock = 64;  // query rows per task, as in ops/cpu/attention.cc
constexpr int64_t kMinParallelWork = int64_t{1} << 20;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool RunParallel(int64_t work) { return work >= kMinParallelWork && omp_get_max_threads() > 1; }

// Per-thread scratch kept across calls (see ops/cpu/attention.cc: fresh pages cost time).
float* Scratch(int slot, size_t count) {
  thread_local std::vector<float> buffers[4];
  std::vector<float>& b = buffers[slot];
  if (b.size() < count) b.resize(count);
  return b.data();
}

struct Layout {
  int64_t t, row, out_row;
  int nh, nkv, hd, group;
  int64_t Q(int64_t bi, int h) const { return bi * t * row + static_cast<int64_t>(h) * hd; }
  int64_t K(int64_t bi, int g) const { return bi * t * row + static_cast<int64_t>(nh + g) * hd; }
  int64_t V(int64_t bi, int g) const {
    return bi * t * row + static_cast<int64_t>(nh + nkv + g) * hd;
  }
  int64_t O(int64_t bi, int h) const { return bi * t * out_row + static_cast<int64_t>(h) * hd; }
};

Layout MakeLayout(int64_t t, int nh, int nkv, int hd) {
  return Layout{
      t,       static_cast<int64_t>(nh + 2 * nkv) * hd, static_cast<int64_t>(nh) * hd, nh, nkv, hd,
      nh / nkv};
}

// For each of the b * seg_len global positions, the first position of its segment (empty
// without segments).
std::vector<int64_t> SegmentStarts(const int32_t* segments, int64_t b, int64_t seg_len) {
  std::vector<int64_t> start(static_cast<size_t>(segments ? b * seg_len : 0));
  for (int64_t bi = 0; segments && bi < b; ++bi) {
    for (int64_t i = 0; i < seg_len; ++i) {
      const int64_t n = bi * seg_len + i;
      start[n] = (i > 0 && segments[n] == segments[n - 1]) ? start[n - 1] : i;
    }
  }
  return start;
}

// The key rows query row `row` of sequence bi sees: [Lo, Hi) of the key block. Without segments
// Lo is 0 (a prefix); with them the keys before the query's segment start are cut off. Both
// grow with the row, so a task's rows together see [Lo(first row), Hi(last row)).
struct Visible {
  ChunkedPositions qp, kp;
  const int64_t* starts;  // this sequence's segment starts by global position, or null
  int64_t Hi(int64_t row) const { return kp.CountThrough(qp.At(row)); }
  int64_t Lo(int64_t row) const {
    return starts == nullptr ? 0 : kp.CountThrough(starts[qp.At(row)] - 1);
  }
};

}  // namespace

void AttentionBlockForward(const float* q_qkv, const float* kv_qkv, int64_t b, int64_t t, int nh,
                           int nkv, int hd, ChunkedPositions qp, ChunkedPositions kp, bool first,
                           float* out, float* lse, const int32_t* segments, int64_t seg_len) {
  const Layout L = MakeLayout(t, nh, nkv, hd);
  const std::vector<int64_t> starts = SegmentStarts(segments, b, seg_len);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t nblocks = (t + kBlock - 1) / kBlock;
  const int64_t tasks = b * nh * nblocks;
  const bool parallel = RunParallel(b * nh * t * t * hd);
#pragma omp parallel if (parallel)
  {
    float* s = Scratch(0, static_cast<size_t>(kBlock * t));
    float* ob = Scratch(1, static_cast<size_t>(kBlock * hd));
    float* blse = Scratch(2, kBlock);
    float* inv_sum = Scratch(3, kBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t qb = nblocks - 1 - task % nblocks;
      const int64_t bh = task / nblocks;
      const int64_t bi = bh / nh;
      const int h = static_cast<int>(bh % nh);
      const int g = h / L.group;
      const int64_t r0 = qb * kBlock;
      const int64_t r1 = std::min(t, r0 + kBlock);
      const int64_t m = r1 - r0;
      // Positions grow with the row: the block's last query sees the furthest key, its first
      // query's segment start is the earliest (k0; 0 without segments).
      const Visible vis{qp, kp, segments ? starts.data() + bi * seg_len : nullptr};
      const int64_t k0 = vis.Lo(r0);
      const int64_t kn = vis.Hi(r1 - 1) - k0;
      float* o = out + L.O(bi, h) + r0 * L.out_row;
      float* lse_row = lse + bh * t + r0;
      if (kn <= 0) {
        if (first) {
          for (int64_t i = 0; i < m; ++i) {
            std::fill(o + i * L.out_row, o + i * L.out_row + hd, 0.0f);
            lse_row[i] = kNegInf;
          }
        }
        continue;
      }
      const float* q = q_qkv + L.Q(bi, h) + r0 * L.row;
      const float* k = kv_qkv + L.K(bi, g) + k0 * L.row;
      const float* v = kv_qkv + L.V(bi, g) + k0 * L.row;
      Gemm(false, true, m, kn, hd, scale, q, L.row, k, L.row, 0.0f, s, kn);
      for (int64_t i = 0; i < m; ++i) {
        float* srow = s + i * kn;
        const int64_t lo = vis.Lo(r0 + i) - k0, valid = vis.Hi(r0 + i) - k0;
        if (valid <= lo) {
          std::fill(srow, srow + kn, 0.0f);
          blse[i] = kNegInf;
          inv_sum[i] = 0.0f;
          continue;
        }
        const float mx = RowMax(srow + lo, valid - lo);
        const double sum = ExpShiftedAndSum(srow + lo, srow + lo, valid - lo, mx);
        std::fill(srow, srow + lo, 0.0f);
        std::fill(srow + valid, srow + kn, 0.0f);
        blse[i] = static_cast<float>(mx + std::log(sum));
        inv_sum[i] = static_cast<float>(1.0 / sum);
      }
      Gemm(false, false, m, hd, kn, 1.0f, s, kn, v, L.row, 0.0f, ob, hd);
      for (int64_t i = 0; i < m; ++i) {
        float* orow = o + i * L.out_row;
        const float* brow = ob + i * hd;
        const float lb = blse[i];
        const float lo = first ? kNegInf : lse_row[i];
        if (lb == kNegInf) {
          if (first) {
            std::fill(orow, orow + hd, 0.0f);
            lse_row[i] = kNegInf;
          }
          continue;
        }
        if (lo == kNegInf) {
          for (int d = 0; d < hd; ++d) orow[d] = brow[d] * inv_sum[i];
          lse_row[i] = lb;
          continue;
        }
        // Online softmax: both partial outputs are normalised by their own sums; reweight each
        // by its share exp(lse_part - lse_new) of the merged sum.
        const float mx = std::max(lo, lb);
        const float merged = mx + std::log(std::exp(lo - mx) + std::exp(lb - mx));
        const float a = std::exp(lo - merged);
        const float c = std::exp(lb - merged) * inv_sum[i];
        for (int d = 0; d < hd; ++d) orow[d] = orow[d] * a + brow[d] * c;
        lse_row[i] = merged;
      }
    }
  }
}

void AttentionBlockBackward(const float* dout, const float* q_qkv, const float* kv_qkv,
                            const float* out, const float* lse, int64_t b, int64_t t, int nh,
                            int nkv, int hd, ChunkedPositions qp, ChunkedPositions kp,
                            float* dq_qkv, float* dkv_qkv, const int32_t* segments,
                            int64_t seg_len) {
  const Layout L = MakeLayout(t, nh, nkv, hd);
  const std::vector<int64_t> starts = SegmentStarts(segments, b, seg_len);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t nblocks = (t + kBlock - 1) / kBlock;
  const int64_t tasks = b * nkv;
  const bool parallel = RunParallel(b * nh * t * t * hd);
#pragma omp parallel if (parallel)
  {
    float* p = Scratch(0, static_cast<size_t>(kBlock * t));
    float* ds = Scratch(1, static_cast<size_t>(kBlock * t));
    float* dsum = Scratch(2, kBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bi = task / nkv;
      const int g = static_cast<int>(task % nkv);
      const Visible vis{qp, kp, segments ? starts.data() + bi * seg_len : nullptr};
      for (int h = g * L.group; h < (g + 1) * L.group; ++h) {
        const int64_t bh = bi * nh + h;
        for (int64_t qb = 0; qb < nblocks; ++qb) {
          const int64_t r0 = qb * kBlock;
          const int64_t r1 = std::min(t, r0 + kBlock);
          const int64_t m = r1 - r0;
          const int64_t k0 = vis.Lo(r0);  // the key rows [k0, k0 + kn) as in the forward
          const int64_t kn = vis.Hi(r1 - 1) - k0;
          if (kn <= 0) continue;
          const float* k = kv_qkv + L.K(bi, g) + k0 * L.row;
          const float* v = kv_qkv + L.V(bi, g) + k0 * L.row;
          float* dk = dkv_qkv + L.K(bi, g) + k0 * L.row;
          float* dv = dkv_qkv + L.V(bi, g) + k0 * L.row;
          const float* q = q_qkv + L.Q(bi, h) + r0 * L.row;
          const float* o = out + L.O(bi, h) + r0 * L.out_row;
          const float* dob = dout + L.O(bi, h) + r0 * L.out_row;
          float* dq = dq_qkv + L.Q(bi, h) + r0 * L.row;
          const float* lse_row = lse + bh * t + r0;
          // P = exp(scale * q k^T - lse) with the whole sequence's lse: this block's share of
          // the final softmax; 0 outside each row's visible run.
          Gemm(false, true, m, kn, hd, scale, q, L.row, k, L.row, 0.0f, p, kn);
          for (int64_t i = 0; i < m; ++i) {
            float* prow = p + i * kn;
            const int64_t lo = vis.Lo(r0 + i) - k0;
            const int64_t valid = std::max(lo, vis.Hi(r0 + i) - k0);
            if (valid > lo) ExpShiftedAndSum(prow + lo, prow + lo, valid - lo, lse_row[i]);
            std::fill(prow, prow + lo, 0.0f);
            std::fill(prow + valid, prow + kn, 0.0f);
            double acc = 0.0;  // D_i = dO_i . O_i (the final output's)
            for (int d = 0; d < hd; ++d) {
              acc += static_cast<double>(dob[i * L.out_row + d]) * o[i * L.out_row + d];
            }
            dsum[i] = static_cast<float>(acc);
          }
          Gemm(false, true, m, kn, hd, 1.0f, dob, L.out_row, v, L.row, 0.0f, ds, kn);
          for (int64_t i = 0; i < m; ++i) SoftmaxBackwardRow(p + i * kn, ds + i * kn, kn, dsum[i]);
          Gemm(true, false, kn, hd, m, 1.0f, p, kn, dob, L.out_row, 1.0f, dv, L.row);
          Gemm(false, false, m, hd, kn, scale, ds, kn, k, L.row, 1.0f, dq, L.row);
          Gemm(true, false, kn, hd, m, scale, ds, kn, q, L.row, 1.0f, dk, L.row);
        }
      }
    }
  }
}

}  // namespace loom::ops::cpu
