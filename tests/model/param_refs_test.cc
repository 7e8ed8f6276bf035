// ResolveGptParams: the handles GptModel reads its parameters through are resolved when it is
// built. Every parameter of every stage's table is read through exactly one handle of the right
// name; a table lacking a name the model reads, or holding one it never reads, is an error
// naming it, at build time rather than a failed lookup in a step.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/gpt.h"
#include "model/gpt_config.h"
#include "model/gpt_params.h"

namespace loom {
namespace {

GptConfig Model(bool llama, bool tied) {
  GptConfig c;
  c.family = llama ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = 4;
  c.heads = 4;
  c.kv_heads = llama ? 2 : 4;
  c.hidden = 32;
  c.ffn_hidden = llama ? 80 : 128;
  c.vocab = 100;
  c.padded_vocab = 128;
  c.max_seq = 16;
  c.tied_embeddings = tied;
  return c;
}

std::string NameOf(const ParamTable& t, ParamRef r) {
  return r.held() ? t.specs()[r.index].name : "(unheld)";
}

TEST(ParamRefsTest, EveryStageResolvesEachParameterByItsName) {
  for (bool llama : {false, true}) {
    for (bool tied : {false, true}) {
      const GptConfig c = Model(llama, tied);
      // The whole model, and both stages of a 2-stage pipeline of 2 chunks each (interleaved:
      // stage 0 holds layers 0 and 2, stage 1 layers 1 and 3; a tied head on stage 1 is a copy).
      std::vector<GptStage> stages = {GptStage{}, PipelineStageOf(2, 0, {1, 1, 1, 1}),
                                      PipelineStageOf(2, 1, {1, 1, 1, 1})};
      for (const GptStage& st : stages) {
        auto stage = ResolveGptStage(c, st);
        ASSERT_TRUE(stage.ok()) << stage.status();
        auto table = GptParamTable(c, 1, 0, *stage);
        ASSERT_TRUE(table.ok()) << table.status();
        auto refs = ResolveGptParams(c, *stage, *table);
        ASSERT_TRUE(refs.ok()) << refs.status();
        const std::string what =
            absl::StrCat(llama ? "LLaMA" : "GPT-2", tied ? " tied" : "", " embedding ",
                         stage->embedding, " head ", stage->head);
        ASSERT_EQ(refs->layers.size(), 4u);
        for (const GptStage::Chunk& ch : stage->chunks) {
          const GptParamRefs::Layer& L = refs->layers[ch.first_layer];
          const std::string p = absl::StrCat("blocks.", ch.first_layer, ".");
          EXPECT_EQ(NameOf(*table, L.qkv_w), p + "attn.qkv.weight") << what;
          EXPECT_EQ(NameOf(*table, L.proj_w), p + "attn.proj.weight") << what;
          EXPECT_EQ(NameOf(*table, L.norm1_w), p + (llama ? "attn_norm.weight" : "ln1.weight"));
          EXPECT_EQ(NameOf(*table, L.fc_w), p + (llama ? "mlp.gate_up.weight" : "mlp.fc.weight"));
          EXPECT_EQ(NameOf(*table, L.out_w), p + (llama ? "mlp.down.weight" : "mlp.proj.weight"));
          EXPECT_EQ(NameOf(*table, L.out_b), llama ? "(unheld)" : p + "mlp.proj.bias") << what;
          EXPECT_EQ(NameOf(*table, L.norm2_b), llama ? "(unheld)" : p + "ln2.bias") << what;
        }
        // Layers of other stages are not held here.
        for (int l = 0; l < 4; ++l) {
          bool here = false;
          for (const GptStage::Chunk& ch : stage->chunks) {
            here |= l >= ch.first_layer && l < ch.first_layer + ch.layers;
          }
          if (!here) {
            EXPECT_FALSE(refs->layers[l].qkv_w.held()) << what << " layer " << l;
          }
        }
        EXPECT_EQ(refs->wte.held(), stage->embedding) << what;
        EXPECT_EQ(refs->wpe.held(), stage->embedding && !llama) << what;
        EXPECT_EQ(refs->head.held(), stage->head) << what;
        if (stage->head) {
          EXPECT_EQ(NameOf(*table, refs->head), tied ? "wte.weight" : "lm_head.weight") << what;
          EXPECT_EQ(NameOf(*table, refs->final_norm_w), llama ? "final_norm.weight" : "ln_f.weight")
              << what;
        }
      }
    }
  }
}

// The table GptModel would be built on, less (or plus) one parameter.
ParamTable TableWithout(const GptConfig& c, const std::string& drop, const std::string& add = "") {
  std::vector<ParamDesc> descs;
  for (ParamDesc d : GptParamDescs(c)) {
    if (d.name == drop) {
      if (add.empty()) continue;
      d.name = add;
    }
    descs.push_back(d);
  }
  return *ParamTable::Create(descs);
}

TEST(ParamRefsTest, AMissingParameterIsAnErrorNamingIt) {
  const GptConfig c = Model(false, true);
  auto stage = ResolveGptStage(c, {});
  ASSERT_TRUE(stage.ok());
  auto refs = ResolveGptParams(c, *stage, TableWithout(c, "blocks.2.ln2.bias"));
  ASSERT_FALSE(refs.ok());
  EXPECT_EQ(refs.status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(refs.status().message(), "lacks 'blocks.2.ln2.bias'"))
      << refs.status();
  // A misspelt name: the model's name is missing and the table's is never read.
  refs = ResolveGptParams(c, *stage, TableWithout(c, "ln_f.weight", "ln_f.weigth"));
  ASSERT_FALSE(refs.ok());
  EXPECT_TRUE(absl::StrContains(refs.status().message(), "lacks 'ln_f.weight'")) << refs.status();
  // LLaMA's table read as GPT-2's: every bias and LayerNorm is missing.
  const GptConfig llama = Model(true, false);
  GptConfig wrong = llama;
  wrong.family = ModelFamily::kGpt2;
  auto llama_stage = ResolveGptStage(llama, {});
  ASSERT_TRUE(llama_stage.ok());
  refs = ResolveGptParams(wrong, *llama_stage, GptParamLayout(llama));
  ASSERT_FALSE(refs.ok());
  EXPECT_TRUE(absl::StrContains(refs.status().message(), "'wpe.weight'")) << refs.status();
}

TEST(ParamRefsTest, AParameterTheModelNeverReadsIsAnError) {
  const GptConfig c = Model(true, false);
  auto stage = ResolveGptStage(c, {});
  ASSERT_TRUE(stage.ok());
  std::vector<ParamDesc> descs = GptParamDescs(c);
  ParamDesc extra = descs.back();
  extra.name = "blocks.1.mlp.extra.weight";
  descs.push_back(extra);
  auto table = ParamTable::Create(descs);
  ASSERT_TRUE(table.ok());
  auto refs = ResolveGptParams(c, *stage, *table);
  ASSERT_FALSE(refs.ok());
  EXPECT_TRUE(absl::StrContains(refs.status().message(),
                                "holds 'blocks.1.mlp.extra.weight', which the LLaMA model never "
                                "reads"))
      << refs.status();
}

// The model's own handles: each parameter view it reads is the one its name gives.
TEST(ParamRefsTest, ModelBuildsAndItsViewsAreTheNamedOnes) {
  for (bool llama : {false, true}) {
    auto m = GptModel::Create(Model(llama, !llama), CpuDevice());
    ASSERT_TRUE(m.ok()) << m.status();
    const ParamTable& t = (*m)->layout();
    for (const ParamSpec& s : t.specs()) {
      auto by_name = (*m)->ParamByName(s.name);
      ASSERT_TRUE(by_name.ok()) << by_name.status();
      EXPECT_EQ(by_name->data(), (*m)->Param(s).data()) << s.name;
    }
    EXPECT_FALSE((*m)->ParamByName("blocks.0.no_such.weight").ok());
  }
}

}  // namespace
}  // namespace loom
