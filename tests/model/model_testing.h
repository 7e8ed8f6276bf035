// Helpers shared by model_test and trainer_test: the PyTorch model fixtures that
// tools/gen_model_fixture.py writes into tests/fixtures/model/ (read with tests/ops/fixture.h),
// the GptConfig they describe, and one training step done the way train/trainer.cc Step()
// does it, for tests that drive GptModel + AdamW directly; it brings ScopedTempDir
// (tests/temp_dir.h) along. Header-only: the test folders glob only *_test.cc files.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallel/adamw.h"
#include "model/gpt.h"
#include "model/gpt_config.h"
#include "model/gpt_params.h"
#include "ops/optimizer.h"
#include "runtime/status.h"
#include "tests/ops/fixture.h"
#include "tests/temp_dir.h"  // ScopedTempDir, for the tests that include this

namespace loom::testing {

inline std::string SourceDir() {
  const char* env = std::getenv("LOOM_SOURCE_DIR");
  std::string root = env != nullptr && *env != '\0' ? env : "";
#ifdef LOOM_SOURCE_DIR
  if (root.empty()) root = LOOM_SOURCE_DIR;
#endif
  return root.empty() ? "." : root;
}

inline std::string ModelFixturePath(const std::string& file) {
  return SourceDir() + "/tests/fixtures/model/" + file;
}

// "gpt2" or "llama": the LOOMFIX1 file <name>.bin.
inline absl::StatusOr<Fixture> LoadModelFixture(const std::string& name) {
  return Fixture::LoadFile(ModelFixturePath(name + ".bin"));
}

// The model the fixture describes (its int / float scalars, named as GptConfig's fields).
inline absl::StatusOr<GptConfig> ConfigFromFixture(const Fixture& fx) {
  GptConfig c;
  LOOM_ASSIGN_OR_RETURN(int64_t family, fx.Int("family"));
  c.family = family == 1 ? ModelFamily::kLlama : ModelFamily::kGpt2;
  LOOM_ASSIGN_OR_RETURN(int64_t layers, fx.Int("layers"));
  LOOM_ASSIGN_OR_RETURN(int64_t heads, fx.Int("heads"));
  LOOM_ASSIGN_OR_RETURN(int64_t kv_heads, fx.Int("kv_heads"));
  LOOM_ASSIGN_OR_RETURN(int64_t hidden, fx.Int("hidden"));
  LOOM_ASSIGN_OR_RETURN(int64_t ffn, fx.Int("ffn_hidden"));
  LOOM_ASSIGN_OR_RETURN(int64_t max_seq, fx.Int("max_seq"));
  LOOM_ASSIGN_OR_RETURN(int64_t tied, fx.Int("tied"));
  LOOM_ASSIGN_OR_RETURN(c.vocab, fx.Int("vocab"));
  LOOM_ASSIGN_OR_RETURN(c.padded_vocab, fx.Int("padded_vocab"));
  LOOM_ASSIGN_OR_RETURN(c.norm_eps, fx.Float("norm_eps"));
  LOOM_ASSIGN_OR_RETURN(c.rope_theta, fx.Float("rope_theta"));
  c.layers = static_cast<int>(layers);
  c.heads = static_cast<int>(heads);
  c.kv_heads = static_cast<int>(kv_heads);
  c.hidden = static_cast<int>(hidden);
  c.ffn_hidden = static_cast<int>(ffn);
  c.max_seq = static_cast<int>(max_seq);
  c.tied_embeddings = tied != 0;
  LOOM_RETURN_IF_ERROR(c.Validate());
  return c;
}

// The fixture's "param/<name>" tensors laid out flat in `layout` order; every spec must be
// there with its shape.
inline absl::StatusOr<std::vector<float>> ParamsFromFixture(const Fixture& fx,
                                                            const ParamTable& layout) {
  std::vector<float> flat(layout.total());
  for (const ParamSpec& s : layout.specs()) {
    LOOM_ASSIGN_OR_RETURN(Tensor t, fx.Get("param/" + s.name));
    if (t.shape() != s.shape) {
      return absl::InvalidArgumentError(absl::StrCat(fx.path(), ": param/", s.name, " is ",
                                                     t.shape().ToString(), ", layout says ",
                                                     s.shape.ToString()));
    }
    std::copy(t.data_as<float>(), t.data_as<float>() + t.numel(), flat.begin() + s.offset);
  }
  return flat;
}

// The fixture's model with its weights, on the CPU.
inline absl::StatusOr<std::unique_ptr<GptModel>> ModelFromFixture(const Fixture& fx) {
  LOOM_ASSIGN_OR_RETURN(GptConfig c, ConfigFromFixture(fx));
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<GptModel> m, GptModel::Create(c, CpuDevice()));
  LOOM_ASSIGN_OR_RETURN(std::vector<float> p, ParamsFromFixture(fx, m->layout()));
  LOOM_RETURN_IF_ERROR(m->params().CopyFromFloats(p));
  return m;
}

// The optimizer settings the fixture trained with.
struct FixtureTraining {
  AdamWSettings adam;
  float lr = 0, grad_clip = 0;
};
inline absl::StatusOr<FixtureTraining> TrainingFromFixture(const Fixture& fx) {
  FixtureTraining t;
  LOOM_ASSIGN_OR_RETURN(t.lr, fx.Float("lr"));
  LOOM_ASSIGN_OR_RETURN(t.grad_clip, fx.Float("grad_clip"));
  LOOM_ASSIGN_OR_RETURN(t.adam.beta1, fx.Float("beta1"));
  LOOM_ASSIGN_OR_RETURN(t.adam.beta2, fx.Float("beta2"));
  LOOM_ASSIGN_OR_RETURN(t.adam.eps, fx.Float("eps"));
  LOOM_ASSIGN_OR_RETURN(t.adam.weight_decay, fx.Float("weight_decay"));
  return t;
}

// One optimizer step on one batch as train/trainer.cc Step() does it with one rank and one
// micro-batch: zero grads, forward + backward of the mean loss, global L2 gradient norm over
// the whole gradient buffer, clip scale clip / norm when norm > clip, AdamW at step `step`
// (1-based). Returns the loss before the update; *grad_norm receives the norm.
inline absl::StatusOr<float> TrainStep(GptModel& model, AdamW& opt, const Tensor& tokens,
                                       const Tensor& targets, float lr, float clip, int64_t step,
                                       double* grad_norm) {
  LOOM_RETURN_IF_ERROR(model.ZeroGrads());
  LOOM_ASSIGN_OR_RETURN(float loss, model.ForwardBackward(tokens, targets, 1.0f));
  LOOM_ASSIGN_OR_RETURN(Tensor acc, Tensor::Zeros(Shape{1}, DType::kF32, model.device()));
  LOOM_RETURN_IF_ERROR(ops::SumOfSquaresAccumulate(model.grads(), acc));
  LOOM_ASSIGN_OR_RETURN(std::vector<float> sq, acc.ToFloatVector());
  const double norm = std::sqrt(static_cast<double>(sq[0]));
  if (grad_norm != nullptr) *grad_norm = norm;
  float scale = 1.0f;
  if (clip > 0 && norm > clip) scale = static_cast<float>(clip / norm);
  LOOM_RETURN_IF_ERROR(opt.Step(model.params(), model.grads(), lr, step, scale));
  return loss;
}

// Max |x| over a vector, at least `floor`.
inline double MaxAbs(const std::vector<float>& v, double floor = 0.0) {
  double m = floor;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// MatchesFixture with an absolute floor that scales with the tensor: element-wise
// |got - want| <= rtol * |want| + floor * max|want|. The floor covers elements that are sums of
// much larger terms cancelling (their float32 error is set by the terms, not by the result).
inline ::testing::AssertionResult MatchesFixtureScaled(const Tensor& got, const Fixture& fx,
                                                       const std::string& name, double rtol,
                                                       double floor) {
  auto want = fx.Get(name);
  if (!want.ok()) return ::testing::AssertionFailure() << want.status().message();
  auto w = want->ToFloatVector();
  if (!w.ok()) return ::testing::AssertionFailure() << w.status().message();
  return MatchesFixture(got, fx, name, rtol, floor * MaxAbs(*w, 1e-30));
}

}  // namespace loom::testing
