#include "model/param_layout.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/philox.h"
#include "runtime/status.h"

namespace loom {

void ParamLayout::Add(std::string name, Shape shape, InitKind init, float std, bool decay,
                      int64_t zero_rows_from) {
  ParamSpec s;
  s.name = std::move(name);
  s.shape = std::move(shape);
  s.offset = total_;
  s.init = init;
  s.std = std;
  s.decay = decay;
  s.zero_rows_from = zero_rows_from;
  total_ += s.numel();
  specs_.push_back(std::move(s));
}

ParamLayout ParamLayout::ForGpt(const GptConfig& c) {
  ParamLayout l;
  const int64_t C = c.hidden, F = c.ffn_hidden, Vp = c.padded_vocab;
  const float std = 0.02f;
  // Residual projections are scaled by 1/sqrt(2 * layers) (GPT-2): each block adds two of them
  // to the residual stream, so this keeps its variance independent of depth.
  const float proj_std = std / std::sqrt(2.0f * c.layers);
  l.Add("wte.weight", Shape{Vp, C}, InitKind::kNormal, std, true, c.vocab);
  if (!c.is_llama()) l.Add("wpe.weight", Shape{c.max_seq, C}, InitKind::kNormal, std, true);
  for (int i = 0; i < c.layers; ++i) {
    std::string p = absl::StrCat("blocks.", i, ".");
    if (c.is_llama()) {
      l.Add(p + "attn_norm.weight", Shape{C}, InitKind::kOnes, 0, false);
      l.Add(p + "attn.qkv.weight", Shape{c.qkv_dim(), C}, InitKind::kNormal, std, true);
      l.Add(p + "attn.proj.weight", Shape{C, C}, InitKind::kNormal, proj_std, true);
      l.Add(p + "mlp_norm.weight", Shape{C}, InitKind::kOnes, 0, false);
      l.Add(p + "mlp.gate_up.weight", Shape{2 * F, C}, InitKind::kNormal, std, true);
      l.Add(p + "mlp.down.weight", Shape{C, F}, InitKind::kNormal, proj_std, true);
    } else {
      l.Add(p + "ln1.weight", Shape{C}, InitKind::kOnes, 0, false);
      l.Add(p + "ln1.bias", Shape{C}, InitKind::kZeros, 0, false);
      l.Add(p + "attn.qkv.weight", Shape{3 * C, C}, InitKind::kNormal, std, true);
      l.Add(p + "attn.qkv.bias", Shape{3 * C}, InitKind::kZeros, 0, false);
      l.Add(p + "attn.proj.weight", Shape{C, C}, InitKind::kNormal, proj_std, true);
      l.Add(p + "attn.proj.bias", Shape{C}, InitKind::kZeros, 0, false);
      l.Add(p + "ln2.weight", Shape{C}, InitKind::kOnes, 0, false);
      l.Add(p + "ln2.bias", Shape{C}, InitKind::kZeros, 0, false);
      l.Add(p + "mlp.fc.weight", Shape{F, C}, InitKind::kNormal, std, true);
      l.Add(p + "mlp.fc.bias", Shape{F}, InitKind::kZeros, 0, false);
      l.Add(p + "mlp.proj.weight", Shape{C, F}, InitKind::kNormal, proj_std, true);
      l.Add(p + "mlp.proj.bias", Shape{C}, InitKind::kZeros, 0, false);
    }
  }
  if (c.is_llama()) {
    l.Add("final_norm.weight", Shape{C}, InitKind::kOnes, 0, false);
  } else {
    l.Add("ln_f.weight", Shape{C}, InitKind::kOnes, 0, false);
    l.Add("ln_f.bias", Shape{C}, InitKind::kZeros, 0, false);
  }
  if (!c.tied_embeddings) {
    l.Add("lm_head.weight", Shape{Vp, C}, InitKind::kNormal, std, true, c.vocab);
  }
  return l;
}

absl::StatusOr<const ParamSpec*> ParamLayout::Find(const std::string& name) const {
  for (const auto& s : specs_) {
    if (s.name == name) return &s;
  }
  return absl::NotFoundError(absl::StrCat("no parameter named '", name, "'"));
}

namespace {
// FNV-1a of the name: gives each parameter its own Philox key, independent of buffer order.
uint64_t NameHash(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

absl::Status InitParams(const ParamLayout& layout, uint64_t seed, const Tensor& params) {
  if (params.dtype() != DType::kF32 || params.numel() != layout.total()) {
    return absl::InvalidArgumentError(absl::StrCat("InitParams: expected f32[", layout.total(),
                                                   "], got ", params.DebugString()));
  }
  std::vector<float> host(layout.total());
  for (const ParamSpec& s : layout.specs()) {
    float* dst = host.data() + s.offset;
    const int64_t n = s.numel();
    const int64_t row = s.shape.rank() > 1 ? n / s.shape[0] : n;
    const uint64_t key = seed ^ NameHash(s.name);
    // Elements are independent (counter-based RNG), so threads may split them freely.
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float v = 0.0f;
      switch (s.init) {
        case InitKind::kOnes: v = 1.0f; break;
        case InitKind::kZeros: v = 0.0f; break;
        case InitKind::kNormal:
          v = (s.zero_rows_from >= 0 && i / row >= s.zero_rows_from)
                  ? 0.0f
                  : s.std * NormalAt(key, static_cast<uint64_t>(i));
          break;
      }
      dst[i] = v;
    }
  }
  return params.CopyFromFloats(host);
}

}  // namespace loom
