#include "ops/cpu/linear.h"

#include <cblas.h>

#include <algorithm>

#include "ops/cpu/activation.h"

namespace loom::ops::cpu {
namespace {

// One name for sgemm / dgemm so Gemm<T> stays a single template.
void BlasGemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void BlasGemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha,
              const double* a, int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Columns handled by one thread when reducing over rows: wide enough to stream rows, small
// enough to split typical widths across threads.
constexpr int64_t kColumnBlock = 64;

}  // namespace

template <typename T>
void Gemm(const T* a, bool trans_a, const T* b, bool trans_b, T* c, int64_t m, int64_t n, int64_t k,
          T alpha, T beta) {
  if (m == 0 || n == 0) return;
  // BLAS rejects leading dimensions below 1 even when the matrix is empty (k == 0).
  const int64_t lda = std::max<int64_t>(1, trans_a ? m : k);
  const int64_t ldb = std::max<int64_t>(1, trans_b ? k : n);
  BlasGemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
           static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
           static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(n));
}

template <typename T>
void LinearForward(const T* inp, const T* weight, const T* bias, T* out, T* pre_gelu, int64_t n,
                   int64_t ic, int64_t oc) {
  T* target = pre_gelu != nullptr ? pre_gelu : out;
  T beta = T(0);
  if (bias != nullptr) {
    // Start every row from the bias and let the GEMM accumulate onto it.
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < n; ++row) std::copy(bias, bias + oc, target + row * oc);
    beta = T(1);
  }
  Gemm<T>(inp, false, weight, true, target, n, oc, ic, T(1), beta);
  if (pre_gelu != nullptr) GeluForward<T>(pre_gelu, out, n * oc);
}

template <typename T>
void LinearBackward(const T* dout, const T* inp, const T* weight, T* dinp, T* dweight, T* dbias,
                    int64_t n, int64_t ic, int64_t oc) {
  if (dinp != nullptr) Gemm<T>(dout, false, weight, false, dinp, n, ic, oc, T(1), T(0));
  Gemm<T>(dout, true, inp, false, dweight, oc, ic, n, T(1), T(1));
  if (dbias != nullptr) {
    const int64_t num_blocks = (oc + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < num_blocks; ++blk) {
      const int64_t c0 = blk * kColumnBlock;
      const int64_t c1 = std::min(oc, c0 + kColumnBlock);
      for (int64_t row = 0; row < n; ++row) {
        const T* d = dout + row * oc;
        for (int64_t col = c0; col < c1; ++col) dbias[col] += d[col];
      }
    }
  }
}

#define LOOM_INSTANTIATE_LINEAR(T)                                                                 \
  template void Gemm<T>(const T*, bool, const T*, bool, T*, int64_t, int64_t, int64_t, T, T);      \
  template void LinearForward<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, int64_t); \
  template void LinearBackward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t,      \
                                  int64_t);
LOOM_INSTANTIATE_LINEAR(float)
LOOM_INSTANTIATE_LINEAR(double)
#undef LOOM_INSTANTIATE_LINEAR

}  // namespace loom::ops::cpu
