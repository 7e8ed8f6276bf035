#include "ops/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/cpu/softmax_rows.h"

namespace loom::ops::cpu {
namespace {

// Below this many logits a parallel region costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// Row loops: float uses the vectorised kernels of softmax_rows.h, double (gradient checks)
// plain loops with libm's exp.
float MaxOf(const float* row, int64_t n) { return RowMax(row, n); }
double MaxOf(const double* row, int64_t n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
  return mx;
}
double SumExp(const float* row, int64_t n, float mx) { return SumExpShifted(row, n, mx); }
double SumExp(const double* row, int64_t n, double mx) {
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(row[j] - mx);
  return sum;
}
// drow = exp(row - mx) on the valid columns (drow may alias row); returns the sum.
double ExpAndSum(const float* row, float* drow, int64_t n, float mx,
                 const float* prefetch = nullptr) {
  return ExpShiftedAndSum(row, drow, n, mx, prefetch);
}
double ExpAndSum(const double* row, double* drow, int64_t n, double mx,
                 const double* /*prefetch*/ = nullptr) {
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += (drow[j] = std::exp(row[j] - mx));
  return sum;
}
void Scale(float* x, int64_t n, float scale) { ScaleInPlace(x, n, scale); }
void Scale(double* x, int64_t n, double scale) {
  for (int64_t j = 0; j < n; ++j) x[j] *= scale;
}

template <typename T>
T RowSumExp(const T* row, int64_t valid, T mx) {
  return valid == 0 ? T(0) : static_cast<T>(SumExp(row, valid, mx));
}

template <typename T>
T RowTarget(const T* row, int32_t target, int64_t vocab_start, int64_t v) {
  const int64_t local = static_cast<int64_t>(target) - vocab_start;
  return (target >= 0 && local >= 0 && local < v) ? row[local] : T(0);
}

// Reads the whole row before writing it, so drow may alias row.
template <typename T>
void FinishRow(const T* row, int32_t target, int64_t vocab_start, T mx, T sum, T target_logit,
               int64_t v, int64_t valid, T* loss, T* drow, T dloss) {
  if (target < 0) {
    *loss = T(0);
    if (drow) std::fill(drow, drow + v, T(0));
    return;
  }
  *loss = static_cast<T>(std::log(static_cast<double>(sum)) + mx - target_logit);
  if (!drow) return;
  const T scale = static_cast<T>(dloss / static_cast<double>(sum));
  ExpAndSum(row, drow, valid, mx);  // the same two steps as the fused op
  Scale(drow, valid, scale);
  std::fill(drow + valid, drow + v, T(0));
  const int64_t local = static_cast<int64_t>(target) - vocab_start;
  if (local >= 0 && local < valid) drow[local] -= dloss;
}

}  // namespace

template <typename T>
void LogitsRowMax(const T* logits, int64_t n, int64_t v, int64_t valid, T* row_max) {
#pragma omp parallel for schedule(static) if (n * v >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) row_max[r] = MaxOf(logits + r * v, valid);
}

template <typename T>
void LogitsSumExp(const T* logits, const T* global_max, int64_t n, int64_t v, int64_t valid,
                  T* sum_exp) {
#pragma omp parallel for schedule(static) if (n * v >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) sum_exp[r] = RowSumExp(logits + r * v, valid, global_max[r]);
}

template <typename T>
void TargetLogit(const T* logits, const int32_t* targets, int64_t vocab_start, int64_t n, int64_t v,
                 T* target_logit) {
  for (int64_t r = 0; r < n; ++r) {
    target_logit[r] = RowTarget(logits + r * v, targets[r], vocab_start, v);
  }
}

template <typename T>
void VocabParallelCrossEntropyFinish(const T* logits, const int32_t* targets, int64_t vocab_start,
                                     const T* global_max, const T* global_sum_exp,
                                     const T* global_target_logit, int64_t n, int64_t v,
                                     int64_t valid, T* losses, T* dlogits, T dloss) {
#pragma omp parallel for schedule(static) if (n * v >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) {
    FinishRow(logits + r * v, targets[r], vocab_start, global_max[r], global_sum_exp[r],
              global_target_logit[r], v, valid, losses + r, dlogits ? dlogits + r * v : nullptr,
              dloss);
  }
}

// One pass fewer than the pieces: the exponentials are written to dlogits while they are
// summed, then scaled in place, so each logit costs one exp. The numbers are those of
// FinishRow: exp(x - max) rounded to T, times the same scale.
template <typename T>
void CrossEntropyForwardBackward(const T* logits, const int32_t* targets, int64_t n, int64_t v,
                                 int64_t valid, T* losses, T* dlogits, T dloss) {
#pragma omp parallel for schedule(static) if (n * v >= kMinParallelWork)
  for (int64_t r = 0; r < n; ++r) {
    const T* row = logits + r * v;
    T* drow = dlogits ? dlogits + r * v : nullptr;
    const int32_t tg = targets[r];
    if (tg < 0) {
      FinishRow<T>(row, tg, 0, T(0), T(1), T(0), v, valid, losses + r, drow, dloss);
      continue;
    }
    const T mx = MaxOf(row, valid);
    const T target = RowTarget(row, tg, 0, v);  // read before drow overwrites it
    if (!drow) {
      FinishRow(row, tg, 0, mx, RowSumExp(row, valid, mx), target, v, valid, losses + r, drow,
                dloss);
      continue;
    }
    const T* next = r + 1 < n ? row + v : nullptr;
    const T sum = static_cast<T>(ExpAndSum(row, drow, valid, mx, next));
    losses[r] = static_cast<T>(std::log(static_cast<double>(sum)) + mx - target);
    Scale(drow, valid, static_cast<T>(dloss / static_cast<double>(sum)));
    std::fill(drow + valid, drow + v, T(0));
    if (tg < valid) drow[tg] -= dloss;
  }
}

#define LOOM_INSTANTIATE_CE(T)                                                                    \
  template void CrossEntropyForwardBackward<T>(const T*, const int32_t*, int64_t, int64_t,        \
                                               int64_t, T*, T*, T);                               \
  template void LogitsRowMax<T>(const T*, int64_t, int64_t, int64_t, T*);                         \
  template void LogitsSumExp<T>(const T*, const T*, int64_t, int64_t, int64_t, T*);               \
  template void TargetLogit<T>(const T*, const int32_t*, int64_t, int64_t, int64_t, T*);          \
  template void VocabParallelCrossEntropyFinish<T>(const T*, const int32_t*, int64_t, const T*,   \
                                                   const T*, const T*, int64_t, int64_t, int64_t, \
                                                   T*, T*, T);
LOOM_INSTANTIATE_CE(float)
LOOM_INSTANTIATE_CE(double)
#undef LOOM_INSTANTIATE_CE

}  // namespace loom::ops::cpu
