// Job config: every validation rule, derived numbers (exact parameter counts), the files in
// configs/, and `loom config check` (parsing, overrides and defaults: config_text_test.cc).
#include "job/config.h"

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
#include "launcher/command.h"
#include "runtime/device.h"
#include "runtime/files.h"
#include "tests/job/config_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

using namespace testing_config;  // NOLINT: the shared helpers of the config tests

struct RuleCase {
  std::string name;
  std::vector<std::string> sets;
  int world_size;
  std::vector<std::string> expected;  // substrings of the first problem
  size_t count = 1;                   // problems expected in all
};

class RuleTest : public ::testing::TestWithParam<RuleCase> {};

TEST_P(RuleTest, ReportsExactlyThisProblem) {
  const RuleCase& rc = GetParam();
  JobConfig c = With(rc.sets);
  std::vector<std::string> problems = ConfigProblems(c, rc.world_size);
  ASSERT_EQ(problems.size(), rc.count) << absl::StrJoin(problems, "\n");
  for (const auto& e : rc.expected) EXPECT_CONTAINS(problems[0], e);
  absl::Status s = ValidateJobConfig(c, rc.world_size);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(std::string(s.message()), absl::StrCat(rc.count, " problem"));
  EXPECT_FALSE(JobLayout::Create(c, rc.world_size).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Rules, RuleTest,
    ::testing::Values(
        RuleCase{"WorldNotGrid",
                 {"parallel.dp=2", "parallel.tp=2"},
                 6,
                 {"world size 6 != parallel.dp (2) * parallel.tp (2) * parallel.pp (1) = 4"}},
        RuleCase{"WorldNotDivisible",
                 {"parallel.tp=4"},
                 6,
                 {"world size 6", "parallel.tp (4)", "parallel.dp cannot be derived"}},
        // tp dividing kv_heads would divide heads too, so both are reported.
        RuleCase{"HeadsVsTp",
                 {"model.heads=2", "model.kv_heads=2", "parallel.tp=4"},
                 4,
                 {"model.heads (2) is not divisible by parallel.tp (4)"},
                 2},
        RuleCase{"KvHeadsVsTp",
                 {"model.family=LLAMA", "model.heads=4", "model.kv_heads=1", "parallel.tp=2"},
                 2,
                 {"model.kv_heads (1) is not divisible by parallel.tp (2)"}},
        RuleCase{"HeadsVsKvHeads",
                 {"model.family=LLAMA", "model.kv_heads=3"},
                 1,
                 {"model.heads (4) is not divisible by model.kv_heads (3)"}},
        RuleCase{"Gpt2HasNoGqa",
                 {"model.kv_heads=2"},
                 1,
                 {"model.kv_heads (2) must equal model.heads (4)", "GPT2"}},
        RuleCase{"HiddenVsHeads",
                 {"model.hidden=66", "model.ffn_hidden=256"},
                 1,
                 {"model.hidden (66) is not divisible by model.heads (4)"}},
        RuleCase{"RopeOddHeadDim",
                 {"model.family=LLAMA", "model.hidden=36", "model.heads=4", "model.ffn_hidden=96"},
                 1,
                 {"head dim 9", "even", "LLAMA"}},
        RuleCase{"FfnVsTp",
                 {"model.ffn_hidden=250", "parallel.tp=4"},
                 4,
                 {"model.ffn_hidden (250) is not divisible by parallel.tp (4)"}},
        RuleCase{"LayersVsStages",
                 {"model.layers=6", "parallel.pp=4"},
                 4,
                 {"model.layers (6) is not divisible by parallel.pp (4) * "
                  "parallel.virtual_stages (1) = 4",
                  "parallel.stage_layers"}},
        RuleCase{"StageLayersCount",
                 {"parallel.pp=2", "parallel.stage_layers=[1,1,2]"},
                 2,
                 {"parallel.stage_layers has 3 entries, expected parallel.pp (2) * "
                  "parallel.virtual_stages (1) = 2"}},
        RuleCase{"StageLayersSum",
                 {"parallel.pp=2", "parallel.stage_layers=[1,2]"},
                 2,
                 {"parallel.stage_layers sums to 3, expected model.layers (4)"}},
        RuleCase{"StageLayersZero",
                 {"model.layers=4", "parallel.pp=2", "parallel.stage_layers=[0,4]"},
                 2,
                 {"parallel.stage_layers[0] is 0"}},
        RuleCase{"VirtualWith1F1B",
                 {"parallel.pp=2", "parallel.virtual_stages=2"},
                 2,
                 {"parallel.virtual_stages (2) > 1 needs parallel.schedule INTERLEAVED"}},
        RuleCase{"VirtualWithGPipe",
                 {"parallel.pp=2", "parallel.virtual_stages=2", "parallel.schedule=GPIPE"},
                 2,
                 {"needs parallel.schedule INTERLEAVED (got GPIPE)"}},
        RuleCase{"VirtualWithZeroBubble",
                 {"parallel.pp=2", "parallel.virtual_stages=2", "parallel.schedule=ZERO_BUBBLE"},
                 2,
                 {"parallel.schedule ZERO_BUBBLE is ZB-H1",
                  "parallel.virtual_stages must be 1 (got 2)", "ZB-V"}},
        RuleCase{"VirtualWithoutPipeline",
                 {"parallel.virtual_stages=2", "parallel.schedule=INTERLEAVED"},
                 1,
                 {"parallel.virtual_stages (2) > 1 needs parallel.pp > 1"}},
        RuleCase{"InterleavedWithoutVirtual",
                 {"parallel.pp=2", "parallel.schedule=INTERLEAVED"},
                 2,
                 {"parallel.schedule INTERLEAVED needs parallel.virtual_stages > 1"}},
        RuleCase{"InterleavedMicroBatches",
                 {"parallel.pp=2", "parallel.virtual_stages=2", "parallel.schedule=INTERLEAVED",
                  "parallel.global_batch_size=6"},
                 2,
                 {"micro-batches per step", "= 3", "multiple of parallel.pp (2)"}},
        RuleCase{"GlobalBatch",
                 {"parallel.global_batch_size=10"},
                 4,
                 {"parallel.global_batch_size (10) is not divisible by "
                  "parallel.micro_batch_size (2) * dp (4) = 8"}},
        RuleCase{"SeqLongerThanMax",
                 {"data.seq_len=128"},
                 1,
                 {"data.seq_len (128) exceeds model.max_seq (64)"}},
        RuleCase{"SequenceParallel",
                 {"parallel.tp=4", "parallel.sequence_parallel=true", "data.seq_len=62"},
                 4,
                 {"parallel.sequence_parallel", "data.seq_len (62)", "parallel.tp (4)"}},
        RuleCase{"ZeroLayers", {"model.layers=0"}, 1, {"model.layers must be >= 1 (got 0)"}},
        RuleCase{"NegativeMicroBatch",
                 {"parallel.micro_batch_size=-2"},
                 1,
                 {"parallel.micro_batch_size must be >= 1 (got -2)"}},
        RuleCase{"NegativeDp", {"parallel.dp=-1"}, 1, {"parallel.dp must be >= 0"}},
        RuleCase{"ZeroGradBucket",
                 {"parallel.grad_bucket_mb=0"},
                 1,
                 {"parallel.grad_bucket_mb must be > 0 (got 0)"}},
        RuleCase{"ZeroVocab", {"model.vocab=0"}, 1, {"model.vocab must be >= 1 (got 0)"}},
        RuleCase{"VocabTooBigForShards",
                 {"model.vocab=70000", "data.format=RAW_U16"},
                 1,
                 {"model.vocab (70000) exceeds 65536"}},
        RuleCase{"WarmupTooLong",
                 {"lr_schedule.warmup_steps=30"},
                 1,
                 {"lr_schedule.warmup_steps (30) exceeds lr_schedule.total_steps (20)"}},
        RuleCase{"MinLrAboveLr",
                 {"lr_schedule.min_lr=0.01"},
                 1,
                 {"lr_schedule.min_lr (0.01) exceeds optimizer.lr (0.001)"}},
        RuleCase{"StopAfterEnd",
                 {"runtime.stop_at_step=21"},
                 1,
                 {"runtime.stop_at_step (21) exceeds lr_schedule.total_steps (20)"}},
        RuleCase{"ZeroTotalSteps",
                 {"lr_schedule.total_steps=0", "lr_schedule.warmup_steps=0"},
                 1,
                 {"lr_schedule.total_steps must be >= 1 (got 0)"}},
        RuleCase{"ZeroLr",
                 {"optimizer.lr=0", "lr_schedule.min_lr=0"},
                 1,
                 {"optimizer.lr must be > 0 (got 0)"}},
        RuleCase{"Beta2", {"optimizer.beta2=1"}, 1, {"optimizer.beta2 must be in [0, 1) (got 1)"}},
        RuleCase{"NegativeClip", {"optimizer.grad_clip=-1"}, 1, {"optimizer.grad_clip"}},
        RuleCase{"NoTrainData", {"data.train="}, 1, {"data.train is empty"}},
        RuleCase{"EvalWithoutVal",
                 {"data.val=", "logging.eval_interval=10"},
                 1,
                 {"logging.eval_interval (10) is set but data.val is empty"}},
        RuleCase{"IntervalWithoutDir",
                 {"checkpoint.interval=5"},
                 1,
                 {"checkpoint.interval (5) is set but checkpoint.dir is empty"}},
        RuleCase{"ZeroLoggingInterval",
                 {"logging.interval=0"},
                 1,
                 {"logging.interval must be >= 1 (got 0)"}},
        RuleCase{"SampleTooLong",
                 {"logging.sample_interval=5", "logging.sample_length=65"},
                 1,
                 {"logging.sample_length (65) exceeds model.max_seq (64)"}},
        RuleCase{"ZeroTimeout",
                 {"runtime.collective_timeout_s=0"},
                 1,
                 {"runtime.collective_timeout_s must be >= 1 (got 0)"}},
        RuleCase{"Bf16OnCpu",
                 {"precision=BF16", "runtime.backend=CPU"},
                 1,
                 {"precision BF16", "runtime.backend is CPU"}},
        RuleCase{"ZeroWorld", {}, 0, {"world size must be >= 1 (got 0)"}},
        RuleCase{"CpSeqLen",
                 {"parallel.cp=3"},
                 3,
                 {"parallel.cp (3) cuts data.seq_len (64) into 2 * cp = 6 chunks",
                  "not divisible by 6"}},
        RuleCase{"CpWorld",
                 {"parallel.dp=2", "parallel.cp=2"},
                 6,
                 {"world size 6 != parallel.dp (2) * parallel.tp (1) * parallel.cp (2) * "
                  "parallel.pp (1) = 4"}},
        RuleCase{"CpWorldNotDivisible",
                 {"parallel.cp=4", "parallel.tp=2"},
                 4,
                 {"world size 4 is not divisible by parallel.tp (2) * parallel.cp (4)"}},
        RuleCase{"SftTemplateUnknown",
                 {"data.sft.chat_template=chatmlx"},
                 1,
                 {"data.sft.chat_template",
                  "\"chatmlx\" is neither a built-in template (qa, "
                  "chatml, plain) nor an existing file"}},
        RuleCase{"SftTemplateFileMissing",
                 {"data.sft.chat_template=/no/such/template.textproto"},
                 1,
                 {"data.sft.chat_template", "/no/such/template.textproto"}},
        RuleCase{"SftTokenizerMissing",
                 {"data.sft.tokenizer=/no/such/tokenizer.json", "data.sft.chat_template=chatml"},
                 1,
                 {"data.sft.tokenizer \"/no/such/tokenizer.json\" does not exist"}},
        RuleCase{"CpSequenceParallelRows",
                 {"parallel.cp=2", "parallel.tp=4", "parallel.sequence_parallel=true",
                  "data.seq_len=12", "parallel.micro_batch_size=1"},
                 8,
                 {"a context rank's rows", "= 6) over parallel.tp (4)"},
                 1}),
    [](const ::testing::TestParamInfo<RuleCase>& info) { return info.param.name; });

TEST(ValidateTest, ReportsEveryProblemAtOnce) {
  JobConfig c = With({"parallel.tp=3", "data.seq_len=100", "lr_schedule.warmup_steps=50",
                      "optimizer.lr=-1", "data.train="});
  absl::Status s = ValidateJobConfig(c, 4);
  ASSERT_FALSE(s.ok());
  const std::string msg(s.message());
  for (const char* e :
       {"world size 4 is not divisible by parallel.tp (3)",
        "model.heads (4) is not divisible by parallel.tp (3)",
        "data.seq_len (100) exceeds model.max_seq (64)", "lr_schedule.warmup_steps (50) exceeds",
        "optimizer.lr must be > 0", "data.train is empty"}) {
    EXPECT_CONTAINS(msg, e);
  }
  EXPECT_GE(ConfigProblems(c, 4).size(), 6u);
  EXPECT_CONTAINS(msg, absl::StrCat(ConfigProblems(c, 4).size(), " problems"));
}

TEST(ValidateTest, VocabThatDoesNotDivideTpIsPaddedNotRefused) {
  JobConfig c = With({"parallel.tp=4"});  // vocab 257
  EXPECT_TRUE(ValidateJobConfig(c, 4).ok());
  EXPECT_EQ(PaddedVocab(c), 512);  // multiple of 128 * 4
  EXPECT_EQ(PaddedVocab(With({})), 384);
  EXPECT_EQ(PaddedVocab(With({"parallel.tp=2"})), 512);
  EXPECT_EQ(PaddedVocab(With({"parallel.tp=4", "model.vocab_pad_multiple=1"})), 260);
  EXPECT_EQ(PaddedVocab(With({"model.vocab=256"})), 256);
}

TEST(ValidateTest, TinyLayoutsTheTestsUse) {
  const std::vector<std::pair<int, std::vector<std::string>>> layouts = {
      {1, {}},
      {2, {"parallel.tp=2"}},
      {4, {"parallel.tp=4", "parallel.sequence_parallel=true"}},
      {4, {"parallel.pp=4"}},
      {2, {"parallel.pp=2", "parallel.virtual_stages=2", "parallel.schedule=INTERLEAVED"}},
      {4, {}},
      {8, {"parallel.tp=2", "parallel.pp=2", "parallel.distributed_optimizer=true"}},
      {2, {"parallel.pp=2", "parallel.stage_layers=[1,3]"}},
  };
  for (const auto& [world, sets] : layouts) {
    EXPECT_TRUE(ValidateJobConfig(With(sets), world).ok())
        << absl::StrJoin(sets, " ") << " world " << world << ": "
        << ValidateJobConfig(With(sets), world);
  }
}

// Sampling during training runs on the cp group (the rank holding the last position picks the
// token): context parallelism no longer refuses logging.sample_interval, alone or with dp and tp.
TEST(ValidateTest, ContextParallelJobsMaySampleText) {
  for (const auto& [world, sets] : std::vector<std::pair<int, std::vector<std::string>>>{
           {2, {"parallel.cp=2", "logging.sample_interval=5", "runtime.backend=CPU"}},
           {8,
            {"parallel.cp=2", "parallel.dp=2", "parallel.tp=2", "logging.sample_interval=1",
             "runtime.backend=TEST"}}}) {
    EXPECT_TRUE(ValidateJobConfig(With(sets), world).ok())
        << absl::StrJoin(sets, " ") << ": " << ValidateJobConfig(With(sets), world);
    EXPECT_TRUE(NotYetSupported(With(sets)).empty()) << absl::StrJoin(sets, " ");
  }
}

// ---------------------------------------------------------------------------------------------
// Derived numbers.

JobConfig Gpt2Small() {
  auto c = ParseJobConfigText(
      R"pb(
        model { family: GPT2 layers: 12 heads: 12 hidden: 768 vocab: 50257 max_seq: 1024 }
        parallel { micro_batch_size: 16 global_batch_size: 512 }
        optimizer { lr: 6e-4 }
        lr_schedule { total_steps: 100 }
        data { train: "x" }
      )pb",
      "gpt2");
  EXPECT_TRUE(c.ok()) << c.status();
  ApplyDefaults(&*c);
  return *c;
}

TEST(DerivedTest, Gpt2SmallParameterCountIsExact) {
  JobConfig c = Gpt2Small();
  EXPECT_EQ(ParameterCount(c.model()), 124439808);
  auto d = JobLayout::Create(c, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->parameters, 124439808);
  EXPECT_EQ(d->padded_vocab, 50304);
  EXPECT_EQ(d->padded_parameters, 124439808 + 47 * 768);
  EXPECT_EQ(d->head_dim, 64);
  EXPECT_EQ(d->grad_accum_steps, 32);
  EXPECT_EQ(d->tokens_per_step, 512 * 1024);
  // Untied: the head adds V * C.
  c.mutable_model()->set_tied_embeddings(false);
  EXPECT_EQ(ParameterCount(c.model()), 124439808 + 50257LL * 768);
}

TEST(DerivedTest, Gpt2MediumAndTinyLlama) {
  JobConfig c = Gpt2Small();
  c.mutable_model()->set_layers(24);
  c.mutable_model()->set_heads(16);
  c.mutable_model()->set_hidden(1024);
  c.mutable_model()->set_ffn_hidden(4096);
  c.mutable_model()->set_kv_heads(16);
  EXPECT_EQ(ParameterCount(c.model()), 354823168);

  ModelConfig llama;
  llama.set_family(ModelConfig::LLAMA);
  llama.set_layers(22);
  llama.set_heads(32);
  llama.set_kv_heads(4);
  llama.set_hidden(2048);
  llama.set_ffn_hidden(5632);
  llama.set_vocab(32000);
  llama.set_max_seq(2048);
  llama.set_tied_embeddings(false);
  EXPECT_EQ(ParameterCount(llama), 1100048384);
  // A tiny LLaMA counted by hand: V=10, C=8, 2 heads of 4, 1 kv head, F=16, L=1, untied.
  // embed 80 + [norm 8 + q 64 + k 32 + v 32 + o 64 + norm 8 + mlp 3*128] + final 8 + head 80.
  ModelConfig t;
  t.set_family(ModelConfig::LLAMA);
  t.set_layers(1);
  t.set_heads(2);
  t.set_kv_heads(1);
  t.set_hidden(8);
  t.set_ffn_hidden(16);
  t.set_vocab(10);
  t.set_max_seq(4);
  t.set_tied_embeddings(false);
  EXPECT_EQ(ParameterCount(t), 80 + (8 + 64 + 32 + 32 + 64 + 8 + 384) + 8 + 80);
}

TEST(DerivedTest, GridBatchAndStages) {
  // dp derived from the world: 8 ranks / (tp 2 * pp 2) = 2; accumulation 8 / (2 * 2) = 2.
  auto d = JobLayout::Create(With({"parallel.tp=2", "parallel.pp=2"}), 8);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->dp, 2);
  EXPECT_EQ(d->grad_accum_steps, 2);
  EXPECT_EQ(d->tokens_per_step, 8 * 64);
  EXPECT_EQ(d->vocab_per_tp_rank, 256);
  EXPECT_EQ(d->chunk_layers, (std::vector<int>{2, 2}));
  EXPECT_EQ(d->FirstLayerOf(1, 0), 2);
  EXPECT_EQ(d->steps_this_run, 20);

  // Interleaved: chunk k is virtual stage k / pp of stage k % pp, in model order.
  auto v = JobLayout::Create(With({"parallel.pp=2", "parallel.virtual_stages=2",
                                   "parallel.schedule=INTERLEAVED", "runtime.stop_at_step=5"}),
                             2);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->chunk_layers, (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(v->FirstLayerOf(0, 0), 0);
  EXPECT_EQ(v->FirstLayerOf(1, 0), 1);
  EXPECT_EQ(v->FirstLayerOf(0, 1), 2);
  EXPECT_EQ(v->FirstLayerOf(1, 1), 3);
  EXPECT_EQ(v->steps_this_run, 5);

  // Context parallelism: tp 2 x cp 2 x dp 2 (derived) = 8; cp ranks share their sequences.
  auto cp = JobLayout::Create(With({"parallel.tp=2", "parallel.cp=2"}), 8);
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(cp->cp, 2);
  EXPECT_EQ(cp->dp, 2);
  EXPECT_EQ(cp->seq_len_per_cp_rank, 32);
  EXPECT_EQ(cp->grad_accum_steps, 2);
  const std::string cp_text = FormatJobLayout(*cp, "");
  EXPECT_CONTAINS(cp_text, "world size: 8 = dp 2 x tp 2 x pp 1 x cp 2");
  EXPECT_CONTAINS(cp_text, "4 chunks of 16; cp rank r holds chunks r and 3 - r");
  EXPECT_EQ(JobLayout::Create(With({}), 1)->cp, 1);

  auto u = JobLayout::Create(With({"parallel.pp=2", "parallel.stage_layers=[1,3]"}), 2);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->LayersOf(1, 0), 3);
  EXPECT_EQ(u->FirstLayerOf(1, 0), 1);
  const std::string text = FormatJobLayout(*u, "# ");
  EXPECT_CONTAINS(text, "# stage 0: layer 0\n");
  EXPECT_CONTAINS(text, "# stage 1: layers 1-3\n");
  EXPECT_CONTAINS(text, "padded vocab: 384");
}

// ---------------------------------------------------------------------------------------------
// configs/ and `loom config check`.

TEST(ConfigsTest, EveryShippedConfigParsesAndValidates) {
  const std::filesystem::path dir = std::filesystem::path(SourceDir()) / "configs";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".textproto") continue;
    ++count;
    auto c = LoadJobConfig(entry.path().string(), {});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(ValidateJobConfig(*c, 1).ok()) << entry.path() << ": " << ValidateJobConfig(*c, 1);
  }
  EXPECT_GE(count, 4) << "configs/ should hold tiny, gpt2_124m, gpt2_350m and llama_1b";
  auto gpt2 = LoadJobConfig((dir / "gpt2_124m.textproto").string(), {});
  ASSERT_TRUE(gpt2.ok());
  EXPECT_EQ(ParameterCount(gpt2->model()), 124439808);
  auto llama = LoadJobConfig((dir / "llama_1b.textproto").string(), {});
  ASSERT_TRUE(llama.ok());
  EXPECT_EQ(ParameterCount(llama->model()), 1100048384);
  EXPECT_EQ(llama->model().ffn_hidden(), LlamaFfnHidden(llama->model().hidden()));
}

TEST(ConfigsTest, LoadReportsMissingFileAndBadOverride) {
  auto missing = LoadJobConfig("/nonexistent/job.textproto", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_CONTAINS(std::string(missing.status().message()), "/nonexistent/job.textproto");
  const std::string tiny = SourceDir() + "/configs/tiny.textproto";
  auto bad = LoadJobConfig(tiny, {"model.layers=2", "model.heads=x"});
  ASSERT_FALSE(bad.ok());
  EXPECT_CONTAINS(std::string(bad.status().message()), "--set model.heads=x");
}

absl::Status RunCommand(const std::vector<std::string>& args, std::string* out) {
  auto it = CommandRegistry().find("config check");
  if (it == CommandRegistry().end()) return absl::NotFoundError("config check not registered");
  ::testing::internal::CaptureStdout();
  absl::Status s = it->second.run(args);
  *out = ::testing::internal::GetCapturedStdout();
  return s;
}

// A temp dir with one train and one val shard, and the --set flags that point tiny.textproto at
// them and at a fresh run dir there (the shipped data/demo may not exist where tests run).
std::vector<std::string> TinyDataFlags(const testing::ScopedTempDir& tmp) {
  const std::filesystem::path dir = tmp.path();
  // Enough for a sample per data-parallel rank at world size 4 (config check opens the data
  // as training does).
  const std::vector<uint16_t> tokens(600, 7);
  EXPECT_TRUE(WriteShard((dir / "train_000.bin").string(), tokens, ShardFormat::kLlmc).ok());
  EXPECT_TRUE(WriteShard((dir / "val_000.bin").string(), tokens, ShardFormat::kLlmc).ok());
  return {"--set", absl::StrCat("data.train=", (dir / "train_*.bin").string()),
          "--set", absl::StrCat("data.val=", (dir / "val_*.bin").string()),
          "--set", absl::StrCat("logging.run_dir=", (dir / "run").string())};
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The --set values of a flag list, for LoadJobConfig.
std::vector<std::string> SetsOf(const std::vector<std::string>& flags) {
  std::vector<std::string> sets;
  for (size_t i = 0; i + 1 < flags.size(); ++i) {
    if (flags[i] == "--set") sets.push_back(flags[i + 1]);
  }
  return sets;
}

TEST(ConfigCheckCommandTest, PrintsResolvedConfigJobLayoutAndMemory) {
  const std::string tiny = SourceDir() + "/configs/tiny.textproto";
  const testing::ScopedTempDir tmp("print");
  const std::vector<std::string> data = TinyDataFlags(tmp);
  std::string out;
  absl::Status s = RunCommand(
      Concat({"--config", tiny, "--world-size", "4", "--set=parallel.micro_batch_size=1"}, data),
      &out);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_CONTAINS(out, "world size 4");
  EXPECT_CONTAINS(out, "micro_batch_size: 1");
  EXPECT_CONTAINS(out, "dp 4 x tp 1 x pp 1");
  EXPECT_CONTAINS(out, "padded vocab: 384");
  EXPECT_CONTAINS(out, "parameters: ");
  EXPECT_CONTAINS(out, "#   memory per rank (pipeline stage 0, ");
  EXPECT_CONTAINS(out, "#     AdamW moments");
  EXPECT_CONTAINS(out, "#     total ");
  EXPECT_CONTAINS(out, "#   available: ");
  // The output is itself a job file: it parses back to the resolved config.
  auto reparsed = ParseJobConfigText(out, "stdout");
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  auto expected = LoadJobConfig(tiny, Concat({"parallel.micro_batch_size=1"}, SetsOf(data)));
  ASSERT_TRUE(expected.ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*reparsed, *expected));
}

TEST(ConfigCheckCommandTest, RefusesWithEveryProblem) {
  const std::string tiny = SourceDir() + "/configs/tiny.textproto";
  const testing::ScopedTempDir tmp("refuse");
  const std::vector<std::string> data = TinyDataFlags(tmp);
  std::string out;
  absl::Status s = RunCommand(
      Concat({"--config", tiny, "--world-size", "3", "--set", "data.seq_len=65"}, data), &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(std::string(s.message()), "tiny.textproto");
  EXPECT_CONTAINS(std::string(s.message()), "2 problems");
  EXPECT_CONTAINS(std::string(s.message()), "world size 3");
  EXPECT_CONTAINS(std::string(s.message()), "data.seq_len (65)");
  EXPECT_TRUE(out.empty());

  // The shipped data globs, pointed nowhere: each is named.
  s = RunCommand({"--config", tiny, "--set", "data.train=/nowhere/train_*.bin", "--set",
                  "data.val=/nowhere/val_*.bin", "--set", "logging.run_dir="},
                 &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(std::string(s.message()), "2 problems");
  EXPECT_CONTAINS(std::string(s.message()), "data.train: ");
  EXPECT_CONTAINS(std::string(s.message()), "data.val: ");
  EXPECT_CONTAINS(std::string(s.message()), "/nowhere/val_*.bin");

  EXPECT_EQ(RunCommand({"--world-size", "2"}, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunCommand({"--config", tiny, "--bogus"}, &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunCommand({"--config", tiny, "--world-size", "zero"}, &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunCommand({"--config", tiny, "--config", tiny}, &out).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ConfigCheckCommandTest, ConfigAloneAndWithHelpListsTheSubcommands) {
  auto it = CommandRegistry().find("config");
  ASSERT_NE(it, CommandRegistry().end()) << "`loom config --help` would be an unknown command";
  ::testing::internal::CaptureStdout();
  absl::Status s = it->second.run({"--help"});
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_CONTAINS(out, "check");
  EXPECT_EQ(it->second.run({}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(it->second.run({"chek"}).code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Every error at once, bounds, what this build cannot do yet.

TEST(ValidateTest, OverflowingSizesNameTheFieldWritten) {
  // 107 trillion parameters: refused for model.layers, nothing derived from it.
  auto layers = ConfigProblems(With({"model.layers=2147483647"}), 1);
  ASSERT_EQ(layers.size(), 1u) << absl::StrJoin(layers, "\n");
  EXPECT_CONTAINS(layers[0], "model.layers (2147483647) exceeds 10000");
  // A huge hidden would make the derived ffn_hidden overflow: only model.hidden is named.
  auto hidden = ConfigProblems(With({"model.hidden=1073741824"}), 1);
  ASSERT_EQ(hidden.size(), 1u) << absl::StrJoin(hidden, "\n");
  EXPECT_CONTAINS(hidden[0], "model.hidden (1073741824) exceeds 262144");
  for (const char* set : {"model.max_seq=2147483647", "model.ffn_hidden=2147483647",
                          "parallel.global_batch_size=2147483647", "parallel.tp=2147483647",
                          "lr_schedule.total_steps=9223372036854775807"}) {
    JobConfig c = With({set});
    const std::string field = std::string(set).substr(0, std::string(set).find('='));
    const std::string all = absl::StrJoin(ConfigProblems(c, 1), "\n");
    EXPECT_CONTAINS(all, field + " (");
    EXPECT_CONTAINS(all, "exceeds");
    EXPECT_FALSE(JobLayout::Create(c, 1).ok()) << set;
  }
}

TEST(NotYetSupportedTest, EachEntryNamesItsField) {
  EXPECT_TRUE(NotYetSupported(With({})).empty()) << absl::StrJoin(NotYetSupported(With({})), "\n");
  const std::string a_dir = ::testing::TempDir();
  // resume NONE / AUTO and the default timeout are not features asked for.
  EXPECT_TRUE(NotYetSupported(With({"checkpoint.resume=none"})).empty());
  EXPECT_TRUE(NotYetSupported(With({"runtime.collective_timeout_s=300"})).empty());
  // Landed since: checkpoints (a dir, a resume path, init_from a step directory),
  EXPECT_TRUE(NotYetSupported(With({"checkpoint.dir=/tmp/ckpt"})).empty());
  EXPECT_TRUE(NotYetSupported(With({"checkpoint.resume=/ckpt/step_00000010"})).empty());
  EXPECT_TRUE(NotYetSupported(With({"model.init_from=" + a_dir})).empty());
  // tensor parallelism, the distributed optimizer, collective deadlines.
  EXPECT_TRUE(NotYetSupported(With({"parallel.tp=2"})).empty());
  EXPECT_TRUE(NotYetSupported(With({"parallel.distributed_optimizer=true"})).empty());
  EXPECT_TRUE(NotYetSupported(With({"runtime.collective_timeout_s=60"})).empty());
  // BF16: the CPU backend is FP32 only, said once (by ConfigProblems for an explicit CPU).
  if (CudaDeviceCount() == 0) {
    auto bf16 = NotYetSupported(With({"precision=BF16"}));
    ASSERT_EQ(bf16.size(), 1u);
    EXPECT_CONTAINS(bf16[0], "precision BF16 needs a CUDA GPU");
    EXPECT_TRUE(NotYetSupported(With({"precision=BF16", "runtime.backend=CPU"})).empty());
  }
  // Context parallelism: every backend runs the ring (CUDA with its own block kernels).
  EXPECT_TRUE(NotYetSupported(With({"parallel.cp=2", "runtime.backend=CPU"})).empty());
  EXPECT_TRUE(NotYetSupported(With({"parallel.cp=2", "runtime.backend=TEST"})).empty());
  EXPECT_TRUE(NotYetSupported(With({"parallel.cp=2", "runtime.backend=CUDA"})).empty());
}

}  // namespace
}  // namespace loom
