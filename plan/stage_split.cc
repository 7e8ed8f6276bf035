#include "plan/stage_split.h"

#include "absl/strings/str_cat.h"

namespace loom {

std::vector<int> PlannerStageLayers(int layers, int pp, int virtual_stages) {
  const int chunks = pp * virtual_stages;
  if (chunks < 1 || layers < chunks) return {};
  const int q = (layers + chunks - 1) / chunks;
  int deficit = chunks * q - layers;  // < chunks
  std::vector<int> out(chunks, q);
  for (int lo = 0, hi = chunks - 1; deficit > 0; ++lo, --hi) {
    --out[lo];
    if (--deficit == 0 || hi == lo) break;
    --out[hi];
    --deficit;
  }
  return out;
}

std::string FormatStageLayers(const std::vector<int>& chunk_layers) {
  std::string out;
  for (size_t i = 0; i < chunk_layers.size();) {
    size_t j = i;
    while (j < chunk_layers.size() && chunk_layers[j] == chunk_layers[i]) ++j;
    if (!out.empty()) out += ",";
    absl::StrAppend(&out, chunk_layers[i]);
    if (j - i > 1) absl::StrAppend(&out, "*", j - i);
    i = j;
  }
  return out;
}

}  // namespace loom
