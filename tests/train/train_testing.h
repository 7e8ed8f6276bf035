// The one helper that trains k steps of a job on a layout, for the tests that compare training
// runs (the tensor-, pipeline- and data-parallel layout-equivalence tests, exact resume, the
// trainer's own): a trainer built on the world (or World::Self() for the 1-rank reference),
// stepped k times, its losses and gradient norms step by step, and the whole model's weights
// gathered over the tensor and pipeline groups in the global layout. Every failure on the way
// fails the calling test; what was recorded up to it is returned. Also a text shard for those
// tests to train on, and packed fine-tuning data with token flags. Header-only: the test folders
// glob only *_test.cc files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "data/token_flags.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "gtest/gtest.h"
#include "model/gpt_params.h"
#include "parallel/param_table.h"
#include "parallel/world.h"
#include "tests/parallel/layout_compare.h"
#include "train/trainer.h"

namespace loom::testing {

// `lines` lines of `text`, numbered ("line 7: <text>"), byte-encoded into one llm.c shard.
inline void WriteTextShard(const std::string& path, const std::string& text, int lines,
                           const std::string& label = "line") {
  ByteTokenizer tok;
  std::vector<uint16_t> ids;
  for (int i = 0; i < lines; ++i) tok.Encode(absl::StrCat(label, " ", i, ": ", text, " "), &ids);
  absl::Status s = WriteShard(path, ids, ShardFormat::kLlmc);
  EXPECT_TRUE(s.ok()) << path << ": " << s;
}

// Fine-tuning data: lines "q<i>: <text> a: <answer>" (`short_lines`: "<n>? <answer>", a handful
// of tokens each, so a row packs several) packed back to back into one llm.c shard with its
// token flags: each line a document; the tokens of the answer count, except on every third
// line, which counts nothing.
inline void WriteSftShard(const std::string& path, int lines, bool short_lines = false) {
  ByteTokenizer tok;
  std::vector<uint16_t> ids;
  std::vector<uint8_t> flags;
  for (int i = 0; i < lines; ++i) {
    const std::string prompt = short_lines ? absl::StrCat(i % 13, "?")
                                           : absl::StrCat("q", i, ": what follows ", i % 7, "? a:");
    const std::string answer =
        short_lines ? absl::StrCat(" ", i % 13 + 1, i % 2 ? "!" : "", "\n")
                    : absl::StrCat(" ", (i % 7) + 1, i % 2 ? " then more" : "", "\n");
    std::vector<uint16_t> p, a;
    tok.Encode(prompt, &p);
    tok.Encode(answer, &a);
    for (size_t k = 0; k < p.size(); ++k) flags.push_back(k == 0 ? kDocStartFlag : 0);
    for (size_t k = 0; k < a.size(); ++k) flags.push_back(i % 3 == 2 ? 0 : kLossFlag);
    ids.insert(ids.end(), p.begin(), p.end());
    ids.insert(ids.end(), a.begin(), a.end());
  }
  absl::Status s = WriteShard(path, ids, ShardFormat::kLlmc);
  EXPECT_TRUE(s.ok()) << path << ": " << s;
  s = WriteTokenFlags(TokenFlagsPath(path), flags);
  EXPECT_TRUE(s.ok()) << path << ": " << s;
}

// `steps` steps of `t`: the loss and gradient norm of each (up to the first failed step).
inline TrainRun Steps(Trainer& t, int steps) {
  TrainRun run;
  for (int i = 0; i < steps; ++i) {
    auto l = t.Step();
    EXPECT_TRUE(l.ok()) << "step " << t.step() + 1 << ": " << l.status();
    if (!l.ok()) break;
    run.losses.push_back(*l);
    run.grad_norms.push_back(t.last_grad_norm());
  }
  return run;
}

// The whole model from every stage of `t`: each stage's parameters gathered over tp and placed
// at their offsets in the whole-model layout, then summed over the pipeline group (each
// parameter lives on exactly one stage, tied copies excluded, so the sum is exact). The last
// stage's copy of a tied embedding must equal the first stage's bit for bit. Collective over
// the tensor and pipeline groups.
inline std::vector<float> GatherWholeModel(Trainer& t) {
  const ParamTable& table = t.model().layout();
  auto stage = GatherGlobalParams(table, t.model().params(), t.groups().tp());
  EXPECT_TRUE(stage.ok()) << stage.status();
  if (!stage.ok()) return {};
  const ParamTable whole = GptParamLayout(t.model().config());
  std::vector<int64_t> whole_offset;
  {
    int64_t off = 0;
    for (const ParamSpec& s : whole.specs()) {
      whole_offset.push_back(off);
      off += s.global_shape.numel();
    }
  }
  std::vector<double> sum(whole.global_total(), 0.0);
  int64_t src = 0;
  std::vector<float> tied_copy;
  for (const ParamSpec& s : table.specs()) {
    const int64_t n = s.global_shape.numel();
    if (s.tied_copy) {
      tied_copy.assign(stage->begin() + src, stage->begin() + src + n);
    } else {
      auto w = whole.Find(s.name);
      EXPECT_TRUE(w.ok()) << s.name;
      if (!w.ok()) return {};
      const int64_t dst = whole_offset[*w - whole.specs().data()];
      for (int64_t i = 0; i < n; ++i) sum[dst + i] = (*stage)[src + i];
    }
    src += n;
  }
  EXPECT_TRUE(t.groups().pp().AllReduceHost(absl::MakeSpan(sum), ReduceOp::kSum).ok());
  std::vector<float> out(sum.begin(), sum.end());
  if (!tied_copy.empty()) {
    // The last stage's LM head is the first stage's embedding, bit for bit.
    const int64_t n = static_cast<int64_t>(tied_copy.size());
    int64_t mismatches = 0;
    for (int64_t i = 0; i < n; ++i) mismatches += tied_copy[i] != out[i];
    EXPECT_EQ(mismatches, 0) << "the last stage's copy of wte.weight drifted from the first's";
  }
  return out;
}

// Builds the job's trainer on `world` and trains `steps` steps: losses, gradient norms and the
// final whole-model weights. The trainer is handed to `keep` when given (for more checks).
inline TrainRun TrainSteps(const JobConfig& job, World* world, int steps,
                           std::unique_ptr<Trainer>* keep = nullptr) {
  auto t = Trainer::Create(job, world);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  TrainRun run = Steps(**t, steps);
  if (static_cast<int>(run.losses.size()) == steps) run.weights = GatherWholeModel(**t);
  if (keep != nullptr) *keep = std::move(*t);
  return run;
}

}  // namespace loom::testing
