// `loom export`, run through the CLI registry: the weights it writes from a job config are the
// weights training starts from (so model.init_from of the exported file reproduces the random
// init bit for bit), --from converts between formats losslessly, and bad requests are refused
// with the reason.
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "data/token_shard.h"
#include "gtest/gtest.h"
#include "launcher/command.h"
#include "model/gpt_params.h"
#include "model/model_file.h"
#include "parallel/world.h"
#include "runtime/dtype.h"
#include "runtime/files.h"
#include "tests/train/job_testing.h"
#include "train/model_export.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr char kGpt2Job[] = R"(
model { family: GPT2 layers: 2 heads: 2 hidden: 16 vocab: 100 max_seq: 16 }
parallel { micro_batch_size: 1 global_batch_size: 1 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 1 }
data { train: "$DIR/train.bin" seq_len: 8 }
runtime { backend: CPU seed: 4242 }
)";

constexpr char kLlamaJob[] = R"(
model { family: LLAMA layers: 2 heads: 4 kv_heads: 2 hidden: 16 ffn_hidden: 40 vocab: 100
        max_seq: 16 rope_theta: 500000 }
parallel { micro_batch_size: 1 global_batch_size: 1 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 1 }
data { train: "$DIR/train.bin" seq_len: 8 }
runtime { backend: CPU seed: 4242 }
)";

class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    std::vector<uint16_t> ids(64);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint16_t>(i % 100);
    ASSERT_TRUE(WriteShard(dir_ + "/train.bin", ids, ShardFormat::kLlmc).ok());
    ASSERT_TRUE(
        AtomicWriteFile(dir_ + "/gpt2.textproto", absl::StrReplaceAll(kGpt2Job, {{"$DIR", dir_}}))
            .ok());
    ASSERT_TRUE(
        AtomicWriteFile(dir_ + "/llama.textproto", absl::StrReplaceAll(kLlamaJob, {{"$DIR", dir_}}))
            .ok());
  }

  static absl::Status Export(const std::vector<std::string>& args) {
    auto it = CommandRegistry().find("export");
    if (it == CommandRegistry().end()) return absl::NotFoundError("no export command");
    return it->second.run(args);
  }

  // The parameters a trainer for `job_file` (with overrides) starts from.
  std::vector<float> TrainerParams(const std::string& job_file,
                                   const std::vector<std::string>& overrides) {
    auto text = ReadFile(dir_ + "/" + job_file);
    EXPECT_TRUE(text.ok());
    auto job = testing::JobFromText(*text, dir_, overrides);
    EXPECT_TRUE(job.ok()) << job.status();
    auto world = World::Get();
    EXPECT_TRUE(world.ok());
    auto t = Trainer::Create(*job, *world);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return {};
    return *(*t)->model().params().ToFloatVector();
  }

  std::string P(const std::string& name) const { return dir_ + "/" + name; }
  testing::ScopedTempDir tmp_{"export"};
  std::string dir_;
};

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
}

TEST_F(ExportTest, Gpt2ExportThenInitFromReproducesTheInit) {
  const std::vector<float> want = TrainerParams("gpt2.textproto", {});
  ASSERT_FALSE(want.empty());
  for (const std::string format : {"llmc", "loom"}) {
    const std::string out = P("gpt2." + format);
    absl::Status s = Export({"--format", format, "--config", P("gpt2.textproto"), "--out", out});
    ASSERT_TRUE(s.ok()) << s;
    // Another seed, but the weights come from the file.
    EXPECT_TRUE(SameBits(
        TrainerParams("gpt2.textproto", {"runtime.seed=1", "model.init_from=" + out}), want))
        << format;
  }
  // A --set reaches the export: another seed, other weights.
  ASSERT_TRUE(Export({"--format=llmc", "--config", P("gpt2.textproto"), "--set", "runtime.seed=5",
                      "--out", P("seed5.bin")})
                  .ok());
  auto seed5 = ReadModelFile(P("seed5.bin"));
  ASSERT_TRUE(seed5.ok()) << seed5.status();
  EXPECT_FALSE(SameBits(seed5->params, want));
  EXPECT_TRUE(SameBits(seed5->params, TrainerParams("gpt2.textproto", {"runtime.seed=5"})));
}

TEST_F(ExportTest, LlamaExportsAsLoomOnly) {
  const std::vector<float> want = TrainerParams("llama.textproto", {});
  ASSERT_FALSE(want.empty());
  absl::Status s =
      Export({"--format", "loom", "--config", P("llama.textproto"), "--out", P("llama.bin")});
  ASSERT_TRUE(s.ok()) << s;
  auto w = ReadModelFile(P("llama.bin"));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->config.is_llama());
  EXPECT_EQ(w->config.rope_theta, 500000.0f);
  EXPECT_EQ(w->config.padded_vocab, 128);
  EXPECT_TRUE(SameBits(w->params, want));
  EXPECT_TRUE(SameBits(
      TrainerParams("llama.textproto", {"runtime.seed=9", "model.init_from=" + P("llama.bin")}),
      want));

  s = Export({"--format", "llmc", "--config", P("llama.textproto"), "--out", P("llama.llmc")});
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "--format loom")) << s;
}

// The job's init_from goes through export unchanged (the fixture model, as a loom file).
TEST_F(ExportTest, ConfigWithInitFromExportsThoseWeights) {
  auto fx = testing::LoadModelFixture("gpt2");
  ASSERT_TRUE(fx.ok());
  auto job = testing::FixtureJob(*fx, "gpt2", dir_, 2);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(AtomicWriteFile(P("fixture.textproto"), JobConfigToText(*job)).ok());
  absl::Status s =
      Export({"--format", "loom", "--config", P("fixture.textproto"), "--out", P("fx.loom")});
  ASSERT_TRUE(s.ok()) << s;
  auto got = ReadModelFile(P("fx.loom"));
  auto want = ReadModelFile(testing::ModelFixturePath("gpt2.llmc.bin"));
  ASSERT_TRUE(got.ok() && want.ok());
  EXPECT_TRUE(SameBits(got->params, want->params));
}

TEST_F(ExportTest, FromConvertsLosslessly) {
  const std::string src = testing::ModelFixturePath("gpt2.llmc.bin");
  ASSERT_TRUE(Export({"--format", "loom", "--from", src, "--out", P("a.loom")}).ok());
  ASSERT_TRUE(Export({"--format", "llmc", "--from", P("a.loom"), "--out", P("b.llmc")}).ok());
  auto original = ReadFile(src);
  auto back = ReadFile(P("b.llmc"));
  ASSERT_TRUE(original.ok() && back.ok());
  EXPECT_TRUE(*original == *back) << "llm.c -> loom -> llm.c changed the file";

  // bf16 from fp32 is the rounding PyTorch does (the generator's bf16 file).
  ASSERT_TRUE(Export({"--format", "llmc", "--bf16", "--from", src, "--out", P("c.llmc")}).ok());
  auto bf16 = ReadFile(P("c.llmc"));
  auto want_bf16 = ReadFile(testing::ModelFixturePath("gpt2.llmc_bf16.bin"));
  ASSERT_TRUE(bf16.ok() && want_bf16.ok());
  EXPECT_TRUE(*bf16 == *want_bf16);

  const std::string llama = testing::ModelFixturePath("llama.loom.bin");
  ASSERT_TRUE(Export({"--format", "loom", "--from", llama, "--out", P("l.loom")}).ok());
  EXPECT_TRUE(*ReadFile(llama) == *ReadFile(P("l.loom")));
}

// A Hugging Face directory converts to a loom file and back without a change in any weight;
// a job whose model.init_from is that directory exports it through the job's padding.
TEST_F(ExportTest, HuggingFaceInAndOut) {
  const std::string hf = testing::SourceDir() + "/tests/fixtures/hf/llama_f32";
  ASSERT_TRUE(Export({"--format", "loom", "--from", hf, "--out", P("l.loom")}).ok());
  ASSERT_TRUE(Export({"--format", "hf", "--from", P("l.loom"), "--out", P("hf")}).ok());
  auto want = ReadModelFile(hf);
  auto got = ReadModelFile(P("hf"));
  ASSERT_TRUE(want.ok() && got.ok()) << got.status();
  EXPECT_TRUE(SameBits(got->params, want->params));
  const std::string job = absl::StrCat(
      "model { family: LLAMA layers: 2 heads: 4 kv_heads: 2 hidden: 32 ",
      "ffn_hidden: 48 vocab: 64 max_seq: 16 tied_embeddings: false init_from: \"", hf, "\" }\n");
  ASSERT_TRUE(AtomicWriteFile(P("hf.textproto"), job).ok());
  ASSERT_TRUE(Export({"--format", "hf", "--dtype", "bf16", "--config", P("hf.textproto"), "--out",
                      P("hf_bf16")})
                  .ok());
  auto bf16 = ReadModelFile(P("hf_bf16"));
  auto want_bf16 = ReadModelFile(testing::SourceDir() + "/tests/fixtures/hf/llama_bf16");
  ASSERT_TRUE(bf16.ok() && want_bf16.ok()) << bf16.status();
  EXPECT_TRUE(SameBits(bf16->params, want_bf16->params));
}

// What `loom generate` loads (train/model_export.h): the model and weights at a checkpoint, and
// at its Hugging Face export, whole or as one tensor rank's slices, agree with the trainer's.
TEST_F(ExportTest, WeightsAtAnyPath) {
  auto text = ReadFile(P("llama.textproto"));
  ASSERT_TRUE(text.ok());
  auto job = testing::JobFromText(*text, dir_, {"checkpoint.dir=" + P("ckpt")});
  ASSERT_TRUE(job.ok()) << job.status();
  auto world = World::Get();
  ASSERT_TRUE(world.ok());
  std::vector<float> trained;
  GptConfig model;
  {
    auto t = Trainer::Create(*job, *world);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Step().ok());
    ASSERT_TRUE((*t)->SaveCheckpoint().ok());
    ASSERT_TRUE((*t)->FinishCheckpoint().ok());
    trained = *(*t)->model().params().ToFloatVector();
    model = (*t)->model().config();
  }
  ASSERT_TRUE(Export({"--format", "hf", "--from", P("ckpt"), "--out", P("hf")}).ok());
  for (const std::string& path : {P("ckpt"), P("hf")}) {
    auto c = ReadModelConfigAt(path);
    ASSERT_TRUE(c.ok()) << path << ": " << c.status();
    EXPECT_TRUE(GptConfigDifferences(*c, model, "a", "b", false, true).empty()) << path;
    auto whole = ReadWholeModel(path);
    ASSERT_TRUE(whole.ok()) << path << ": " << whole.status();
    auto again = ReadWeightSlicesAt(path, model, GptParamLayout(model));
    ASSERT_TRUE(again.ok()) << path << ": " << again.status();
    EXPECT_TRUE(SameBits(*again, trained)) << path;
    // Tensor rank 1 of 2, with the padding tp 2 gives (256 rows).
    GptConfig tp2 = model;
    tp2.padded_vocab = 256;
    auto table = GptParamTable(tp2, 2, 1);
    ASSERT_TRUE(table.ok());
    auto slices = ReadWeightSlicesAt(path, tp2, *table);
    ASSERT_TRUE(slices.ok()) << path << ": " << slices.status();
    auto want = ReadWeightSlicesAt(P("ckpt"), tp2, *table);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_TRUE(SameBits(*slices, *want)) << path;
  }
}

TEST_F(ExportTest, RefusesBadRequests) {
  struct Case {
    std::vector<std::string> args;
    std::string want;
  };
  const std::string cfg = P("gpt2.textproto");
  const std::vector<Case> cases = {
      {{"--config", cfg, "--out", P("x")}, "--format is required"},
      {{"--format", "llmc", "--config", cfg}, "--out is required"},
      {{"--format", "llmc", "--out", P("x")}, "exactly one of --config and --from"},
      {{"--format", "llmc", "--config", cfg, "--from", P("y"), "--out", P("x")},
       "exactly one of --config and --from"},
      {{"--format", "onnx", "--config", cfg, "--out", P("x")}, "'onnx'"},
      {{"--format", "loom", "--bf16", "--config", cfg, "--out", P("x")}, "--bf16"},
      {{"--format", "loom", "--config", cfg, "--out", P("x"), "--wat"}, "'--wat'"},
      {{"--format", "loom", "--from", P("missing.bin"), "--out", P("x")}, P("missing.bin")},
      {{"--format", "loom", "--config", cfg, "--set", "model.init_from=" + P("gone.bin"), "--out",
        P("x")},
       "model.init_from"},
      {{"--format", "loom", "--config", cfg, "--set", "model.heads=3", "--out", P("x")},
       "model.heads"},
      {{"--format", "hf", "--bf16", "--config", cfg, "--out", P("x")}, "--dtype bf16"},
      {{"--format", "llmc", "--dtype", "bf16", "--config", cfg, "--out", P("x")},
       "--dtype applies to --format hf only"},
      {{"--format", "loom", "--max-shard-mb", "1", "--config", cfg, "--out", P("x")},
       "--max-shard-mb applies to --format hf only"},
      {{"--format", "hf", "--dtype", "f64", "--config", cfg, "--out", P("x")}, "--dtype"},
      {{"--format", "hf", "--config", cfg, "--set",
        "model.init_from=" + testing::SourceDir() + "/tests/fixtures/hf/gpt2_f32", "--out", P("x")},
       "model.hidden: job has"},
  };
  for (const Case& c : cases) {
    absl::Status s = Export(c.args);
    EXPECT_FALSE(s.ok()) << absl::StrJoin(c.args, " ");
    EXPECT_TRUE(absl::StrContains(s.message(), c.want))
        << absl::StrJoin(c.args, " ") << ": " << s.message();
  }
  EXPECT_FALSE(std::filesystem::exists(P("x")));
}

}  // namespace
}  // namespace loom
