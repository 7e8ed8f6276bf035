// Job config text (job/config_text.h, job/config_defaults.h): every kind of field parsed, every
// parse error located by file, line and field path, --set overrides of every type, defaults.
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/token_shard.h"
#include "job/config.h"
#include "launcher/command.h"
#include "runtime/device.h"
#include "runtime/files.h"
#include "tests/job/config_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using namespace testing_config;  // NOLINT: the shared helpers of the config tests

// ---------------------------------------------------------------------------------------------
// Parsing.

TEST(ParseTest, ReadsEveryKindOfField) {
  auto c = ParseJobConfigText(R"pb(
                                model {
                                  family: LLAMA
                                  layers: 2
                                  heads: 4
                                  kv_heads: 2
                                  hidden: 32
                                  vocab: 100
                                  max_seq: 16
                                  norm_eps: 1e-6
                                  tied_embeddings: true
                                }
                                parallel {
                                  tp: 2
                                  stage_layers: [ 1, 1 ]
                                  sequence_parallel: true
                                  schedule: INTERLEAVED
                                }
                                checkpoint { resume: "/ckpt/step_00000010" }
                                precision: BF16
                              )pb",
                              "x.textproto");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model().family(), ModelConfig::LLAMA);
  EXPECT_EQ(c->model().kv_heads(), 2);
  EXPECT_DOUBLE_EQ(c->model().norm_eps(), 1e-6);
  EXPECT_TRUE(c->model().tied_embeddings());
  EXPECT_EQ(c->parallel().tp(), 2);
  EXPECT_EQ(c->parallel().stage_layers_size(), 2);
  EXPECT_TRUE(c->parallel().sequence_parallel());
  EXPECT_EQ(c->parallel().schedule(), ParallelConfig::INTERLEAVED);
  EXPECT_EQ(c->checkpoint().resume(), "/ckpt/step_00000010");
  EXPECT_EQ(c->precision(), JobConfig::BF16);
}

struct ParseErrorCase {
  std::string text;
  std::vector<std::string> expected;  // substrings of the error
};

class ParseErrorTest : public ::testing::TestWithParam<ParseErrorCase> {};

TEST_P(ParseErrorTest, NamesFileLineAndFieldPath) {
  auto c = ParseJobConfigText(GetParam().text, "cfg.textproto");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& e : GetParam().expected) {
    EXPECT_CONTAINS(std::string(c.status().message()), e);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Errors, ParseErrorTest,
    ::testing::Values(
        // Unknown field, with the fields that do exist.
        ParseErrorCase{"model {\n  layers: 2\n  layerz: 3\n}\n",
                       {"cfg.textproto:3:", "model.layerz", "layerz", "model has: family"}},
        // Unknown top-level field after a closed block.
        ParseErrorCase{"model { layers: 2 }\n# comment { \nmodle { layers: 2 }\n",
                       {"cfg.textproto:3:", "modle", "the job config has: model"}},
        // Not an integer.
        ParseErrorCase{"data {\n  train: \"x\"\n}\nmodel {\n  layers: abc\n}\n",
                       {"cfg.textproto:5:", "model.layers", "integer"}},
        // A float where an integer belongs.
        ParseErrorCase{"model { hidden: 1.5 }", {"cfg.textproto:1:", "model.hidden", "integer"}},
        // Unknown enum value.
        ParseErrorCase{"model { family: GPT3 }", {"cfg.textproto:1:", "model.family", "GPT3"}},
        // A string where a number belongs, one level deeper than the previous block.
        ParseErrorCase{"parallel { tp: 2 }\noptimizer {\n  lr: \"fast\"\n}",
                       {"cfg.textproto:3:", "optimizer.lr"}},
        // A number where a message belongs.
        ParseErrorCase{"runtime: 3", {"cfg.textproto:1:", "runtime"}},
        // Out of range.
        ParseErrorCase{"model { layers: 99999999999 }", {"cfg.textproto:1:", "model.layers"}},
        // A bool that is not one.
        ParseErrorCase{"parallel {\n sequence_parallel: maybe }",
                       {"cfg.textproto:2:", "parallel.sequence_parallel"}},
        // Unbalanced braces.
        ParseErrorCase{"model { layers: 2 ", {"cfg.textproto:1:", "model: ", "end of the file"}}));

// ---------------------------------------------------------------------------------------------
// Overrides.

TEST(OverrideTest, SetsScalarsOfEveryType) {
  JobConfig c = Base();
  ASSERT_TRUE(ApplyOverride(&c, "model.layers=8").ok());                        // int32
  ASSERT_TRUE(ApplyOverride(&c, "lr_schedule.total_steps=123456789012").ok());  // int64
  ASSERT_TRUE(ApplyOverride(&c, "optimizer.lr=3e-4").ok());                     // double
  ASSERT_TRUE(ApplyOverride(&c, "parallel.sequence_parallel=true").ok());       // bool
  ASSERT_TRUE(ApplyOverride(&c, "checkpoint.async=0").ok());                    // bool as 0
  ASSERT_TRUE(ApplyOverride(&c, "data.train=\"a b/*.bin\"").ok());              // quoted string
  ASSERT_TRUE(ApplyOverride(&c, "checkpoint.resume=/ckpt/step_00000005").ok());
  ASSERT_TRUE(ApplyOverride(&c, "model.family=LLAMA").ok());             // enum
  ASSERT_TRUE(ApplyOverride(&c, "parallel.schedule=interleaved").ok());  // enum, any case
  ASSERT_TRUE(ApplyOverride(&c, "precision=BF16").ok());                 // top level
  ASSERT_TRUE(ApplyOverride(&c, "runtime.stop_at_step=7").ok());
  EXPECT_EQ(c.model().layers(), 8);
  EXPECT_EQ(c.lr_schedule().total_steps(), 123456789012);
  EXPECT_DOUBLE_EQ(c.optimizer().lr(), 3e-4);
  EXPECT_TRUE(c.parallel().sequence_parallel());
  EXPECT_FALSE(c.checkpoint().async());
  EXPECT_EQ(c.data().train(), "a b/*.bin");
  EXPECT_EQ(c.checkpoint().resume(), "/ckpt/step_00000005");
  EXPECT_EQ(c.model().family(), ModelConfig::LLAMA);
  EXPECT_EQ(c.parallel().schedule(), ParallelConfig::INTERLEAVED);
  EXPECT_EQ(c.precision(), JobConfig::BF16);
  EXPECT_EQ(c.runtime().stop_at_step(), 7);
}

TEST(OverrideTest, RepeatedFieldsTakeAListAndReplace) {
  JobConfig c = Base();
  ASSERT_TRUE(ApplyOverride(&c, "parallel.stage_layers=[1, 3]").ok());
  ASSERT_EQ(c.parallel().stage_layers_size(), 2);
  EXPECT_EQ(c.parallel().stage_layers(1), 3);
  ASSERT_TRUE(ApplyOverride(&c, "parallel.stage_layers=2,1,1").ok());
  ASSERT_EQ(c.parallel().stage_layers_size(), 3);
  EXPECT_EQ(c.parallel().stage_layers(0), 2);
  // A bad item leaves the old contents.
  absl::Status bad = ApplyOverride(&c, "parallel.stage_layers=[1,x]");
  EXPECT_CONTAINS(std::string(bad.message()), "'x'");
  EXPECT_EQ(c.parallel().stage_layers_size(), 3);
  ASSERT_TRUE(ApplyOverride(&c, "parallel.stage_layers=[]").ok());
  EXPECT_EQ(c.parallel().stage_layers_size(), 0);
}

TEST(OverrideTest, ZeroStaysZeroWhereItMeansSomething) {
  // grad_clip 0 turns clipping off; defaults must not overwrite it.
  JobConfig c = With({"optimizer.grad_clip=0", "runtime.seed=0"});
  EXPECT_EQ(c.optimizer().grad_clip(), 0.0);
  EXPECT_EQ(c.runtime().seed(), 0);
  EXPECT_EQ(c.data().seed(), 0);  // follows runtime.seed
  // Written as 0, tp is refused rather than silently becoming 1.
  JobConfig z = With({"parallel.tp=0"});
  EXPECT_EQ(z.parallel().tp(), 0);
  EXPECT_CONTAINS(absl::StrJoin(ConfigProblems(z, 1), "\n"), "parallel.tp must be >= 1");
}

TEST(OverrideTest, DefaultsFollowTheOverrides) {
  JobConfig c = Base();
  c.mutable_model()->clear_kv_heads();
  c.mutable_model()->clear_ffn_hidden();
  c.mutable_data()->clear_seq_len();
  ASSERT_TRUE(ApplyOverride(&c, "model.heads=8").ok());
  ASSERT_TRUE(ApplyOverride(&c, "model.hidden=128").ok());
  ASSERT_TRUE(ApplyOverride(&c, "model.max_seq=32").ok());
  ApplyDefaults(&c);
  EXPECT_EQ(c.model().kv_heads(), 8);
  EXPECT_EQ(c.model().ffn_hidden(), 512);
  EXPECT_EQ(c.data().seq_len(), 32);
}

struct OverrideErrorCase {
  std::string assignment;
  std::vector<std::string> expected;
};

class OverrideErrorTest : public ::testing::TestWithParam<OverrideErrorCase> {};

TEST_P(OverrideErrorTest, NamesTheArgumentAndWhatWasExpected) {
  JobConfig c = Base();
  absl::Status s = ApplyOverride(&c, GetParam().assignment);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(s.message());
  EXPECT_CONTAINS(msg, "--set " + GetParam().assignment);
  for (const auto& e : GetParam().expected) EXPECT_CONTAINS(msg, e);
}

INSTANTIATE_TEST_SUITE_P(
    Errors, OverrideErrorTest,
    ::testing::Values(
        OverrideErrorCase{"model.layerz=3", {"unknown field 'layerz'", "model has:", "layers"}},
        OverrideErrorCase{"modle.layers=3", {"unknown field 'modle'", "the job config has:"}},
        OverrideErrorCase{"model.layers=abc", {"model.layers", "expected an integer"}},
        OverrideErrorCase{"model.layers=1.5", {"expected an integer"}},
        OverrideErrorCase{"model.layers=99999999999", {"expected an integer (32-bit)"}},
        OverrideErrorCase{"optimizer.lr=fast", {"optimizer.lr", "expected a finite number"}},
        OverrideErrorCase{"optimizer.lr=nan", {"expected a finite number"}},
        OverrideErrorCase{"parallel.sequence_parallel=maybe", {"expected true or false"}},
        OverrideErrorCase{"model.family=GPT3", {"model.family", "expected one of GPT2, LLAMA"}},
        OverrideErrorCase{"model=3", {"model is a message", "model.<field>"}},
        OverrideErrorCase{"model.layers.x=3", {"model.layers is a scalar (int32), not a message"}},
        OverrideErrorCase{"model.layers", {"expected path.to.field=value"}},
        OverrideErrorCase{"=3", {"field path is empty"}},
        OverrideErrorCase{"parallel.stage_layers=[1,2", {"']' is missing"}}));

// ---------------------------------------------------------------------------------------------
// Defaults.

TEST(DefaultsTest, FillsLoomDefaults) {
  JobConfig c;
  c.mutable_model()->set_heads(4);
  c.mutable_model()->set_hidden(64);
  c.mutable_model()->set_max_seq(128);
  ApplyDefaults(&c);
  EXPECT_EQ(c.model().family(), ModelConfig::GPT2);
  EXPECT_EQ(c.model().kv_heads(), 4);
  EXPECT_EQ(c.model().ffn_hidden(), 256);
  EXPECT_TRUE(c.model().tied_embeddings());
  EXPECT_DOUBLE_EQ(c.model().norm_eps(), 1e-5);
  EXPECT_DOUBLE_EQ(c.model().rope_theta(), 10000);
  EXPECT_EQ(c.model().vocab_pad_multiple(), 128);
  EXPECT_EQ(c.parallel().tp(), 1);
  EXPECT_EQ(c.parallel().pp(), 1);
  EXPECT_EQ(c.parallel().dp(), 0);
  EXPECT_EQ(c.parallel().virtual_stages(), 1);
  EXPECT_EQ(c.parallel().micro_batch_size(), 1);
  EXPECT_DOUBLE_EQ(c.parallel().grad_bucket_mb(), 25.0);
  EXPECT_DOUBLE_EQ(c.optimizer().beta1(), 0.9);
  EXPECT_DOUBLE_EQ(c.optimizer().beta2(), 0.95);
  EXPECT_DOUBLE_EQ(c.optimizer().eps(), 1e-8);
  EXPECT_DOUBLE_EQ(c.optimizer().grad_clip(), 1.0);
  EXPECT_DOUBLE_EQ(c.optimizer().weight_decay(), 0.1);
  EXPECT_EQ(c.lr_schedule().decay_style(), LrScheduleConfig::COSINE);
  EXPECT_EQ(c.data().seq_len(), 128);
  EXPECT_TRUE(c.data().shuffle());
  EXPECT_EQ(c.data().seed(), 1337);
  EXPECT_EQ(c.checkpoint().resume(), "AUTO");
  EXPECT_EQ(c.data().format(), DataConfig::LLMC);
  EXPECT_FALSE(c.checkpoint().async());
  EXPECT_EQ(c.logging().interval(), 1);
  EXPECT_TRUE(c.logging().jsonl());
  EXPECT_TRUE(c.logging().tensorboard());
  EXPECT_EQ(c.logging().eval_batches(), 20);
  EXPECT_EQ(c.logging().eval_interval(), 0);
  EXPECT_EQ(c.logging().sample_length(), 64);
  EXPECT_EQ(c.runtime().collective_timeout_s(), 300);
  EXPECT_EQ(c.runtime().seed(), 1337);
  EXPECT_EQ(c.runtime().backend(), RuntimeConfig::AUTO);
  EXPECT_EQ(c.precision(), JobConfig::FP32);

  JobConfig again = c;
  ApplyDefaults(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(c, again));
}

TEST(DefaultsTest, LlamaRules) {
  EXPECT_EQ(LlamaFfnHidden(2048), 5632);
  EXPECT_EQ(LlamaFfnHidden(4096), 11008);
  EXPECT_EQ(LlamaFfnHidden(64), 256);
  JobConfig c;
  c.mutable_model()->set_family(ModelConfig::LLAMA);
  c.mutable_model()->set_hidden(2048);
  c.mutable_checkpoint()->set_resume("none");
  ApplyDefaults(&c);
  EXPECT_EQ(c.model().ffn_hidden(), 5632);
  EXPECT_FALSE(c.model().tied_embeddings());
  EXPECT_EQ(c.checkpoint().resume(), "NONE");
}

// ---------------------------------------------------------------------------------------------
// Validation: one broken thing at a time, each reported once and naming its fields.

TEST(ParseTest, ReportsEveryErrorNotJustTheFirst) {
  auto c = ParseJobConfigText(
      "model {\n  layers: x\n  heads: 4\n  hidden: y\n}\nparallel {\n  tp: z\n}\n", "cfg");
  ASSERT_FALSE(c.ok());
  const std::string msg(c.status().message());
  EXPECT_CONTAINS(msg, "3 errors in cfg:");
  EXPECT_CONTAINS(msg, "cfg:2:");
  EXPECT_CONTAINS(msg, "model.layers");
  EXPECT_CONTAINS(msg, "cfg:4:");
  EXPECT_CONTAINS(msg, "model.hidden");
  EXPECT_CONTAINS(msg, "cfg:7:");
  EXPECT_CONTAINS(msg, "parallel.tp");
  // An error on a line that opens a block ends the report (what follows would be echoes).
  auto braces = ParseJobConfigText("model {\n  layerz: 1\n}\nmodle {\n  layers: 2\n}\n", "cfg");
  ASSERT_FALSE(braces.ok());
  const std::string two(braces.status().message());
  EXPECT_CONTAINS(two, "2 errors in cfg:");
  EXPECT_CONTAINS(two, "model.layerz");
  EXPECT_CONTAINS(two, "cfg:4:");
}

TEST(ConfigsTest, LoadReportsEveryBadOverrideAndTheFileErrorsWithThem) {
  const std::string tiny = SourceDir() + "/configs/tiny.textproto";
  auto bad = LoadJobConfig(tiny, {"model.heads=x", "model.layerz=2", "model.layers=3"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(std::string(bad.status().message()), "--set model.heads=x");
  EXPECT_CONTAINS(std::string(bad.status().message()), "--set model.layerz=2");

  const testing::ScopedTempDir tmp("bad");
  const std::filesystem::path dir = tmp.path();
  const std::string file = (dir / "bad.textproto").string();
  ASSERT_TRUE(AtomicWriteFile(file, "model { layers: x }\n").ok());
  auto both = LoadJobConfig(file, {"parallel.tp=two"});
  ASSERT_FALSE(both.ok());
  EXPECT_CONTAINS(std::string(both.status().message()), "bad.textproto:1:");
  EXPECT_CONTAINS(std::string(both.status().message()), "--set parallel.tp=two");

  // A directory is not a job file (it would read as an empty job).
  auto as_dir = LoadJobConfig(dir.string(), {});
  ASSERT_FALSE(as_dir.ok());
  EXPECT_EQ(as_dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(std::string(as_dir.status().message()), "is a directory");
}

}  // namespace
}  // namespace loom
