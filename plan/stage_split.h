// The uneven pipeline split `loom plan` proposes when the layers do not divide evenly over the
// model chunks (pp * virtual stages), written into the job as parallel.stage_layers (which the
// trainer honours as given).
//
// Rule: every chunk gets ceil(layers / chunks) layers, except that the d = chunks * ceil - layers
// chunks that must give one up are taken from the ends of the model inwards: the first chunk
// (which also holds the embedding and, under 1F1B, the most micro-batches in flight), then the
// last (which holds the head and the loss), then the second, the second to last, ... So 126
// layers over 16 stages give 7, 8 x 14, 7: the split of the Llama 3 405B run ("The Llama 3 Herd
// of Models", section 3.3.2: one layer fewer on the first and on the last stage).
// When the layers divide evenly the split is even and stage_layers stays empty (loom's default).
#pragma once

#include <string>
#include <vector>

namespace loom {

// Layers of each model chunk in model order (chunk k is virtual stage k / pp of stage k % pp),
// or empty when there are more chunks than layers.
std::vector<int> PlannerStageLayers(int layers, int pp, int virtual_stages);

// "8*16" for an even split, "7,8*14,7" otherwise: runs of equal counts as count*N.
std::string FormatStageLayers(const std::vector<int>& chunk_layers);

}  // namespace loom
