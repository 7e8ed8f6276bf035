#include "ops/cpu/decode_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace loom::ops::cpu {

template <typename T>
void DecodeAttention(const T* cache, int nh, int nkv, int hd, int64_t pos0, int64_t n, T* out) {
  const int64_t row = static_cast<int64_t>(nh + 2 * nkv) * hd;
  const int group = nh / nkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> s(static_cast<size_t>(pos0 + n));
  std::vector<double> acc(static_cast<size_t>(hd));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t keys = pos0 + i + 1;
    for (int h = 0; h < nh; ++h) {
      const int g = h / group;
      const T* q = cache + (pos0 + i) * row + static_cast<int64_t>(h) * hd;
      double mx = -INFINITY;
      for (int64_t j = 0; j < keys; ++j) {
        const T* k = cache + j * row + static_cast<int64_t>(nh + g) * hd;
        double dot = 0;
        for (int d = 0; d < hd; ++d) dot += static_cast<double>(q[d]) * k[d];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < keys; ++j) {
        const double p = std::exp(s[j] - mx);
        sum += p;
        const T* v = cache + j * row + static_cast<int64_t>(nh + nkv + g) * hd;
        for (int d = 0; d < hd; ++d) acc[d] += p * v[d];
      }
      T* o = out + i * static_cast<int64_t>(nh) * hd + static_cast<int64_t>(h) * hd;
      for (int d = 0; d < hd; ++d) o[d] = static_cast<T>(acc[d] / sum);
    }
  }
}

template void DecodeAttention<float>(const float*, int, int, int, int64_t, int64_t, float*);
template void DecodeAttention<double>(const double*, int, int, int, int64_t, int64_t, double*);

}  // namespace loom::ops::cpu
