// JobLayout (job/job_layout.h): a job validated once into a typed value. It holds the grid,
// the chunks, the batch arithmetic and the enums converted, and it refuses a config with
// problems, listing every one.
#include "job/job_layout.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "job/config_text.h"

namespace loom {
namespace {

constexpr char kJob[] = R"(
model { family: GPT2 layers: 6 heads: 4 hidden: 64 vocab: 300 max_seq: 32 }
parallel { tp: 2 pp: 2 virtual_stages: 3 schedule: INTERLEAVED micro_batch_size: 2
           global_batch_size: 16 recompute: SELECTIVE sequence_parallel: true
           distributed_optimizer: true }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 10 }
data { train: "unused" seq_len: 16 }
runtime { backend: CPU stop_at_step: 4 }
)";

TEST(JobLayoutTest, HoldsTheDerivedNumbersAndTheEnumsConvertedOnce) {
  auto config = ParseJobConfigText(kJob, "job");
  ASSERT_TRUE(config.ok()) << config.status();
  auto l = JobLayout::Create(*config, 8);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->dp, 2);                // 8 / (tp 2 * pp 2)
  EXPECT_EQ(l->grad_accum_steps, 4);  // 16 / (2 * 2)
  EXPECT_EQ(l->tokens_per_step, 16 * 16);
  EXPECT_EQ(l->padded_vocab, 512);  // 300 up to 128 * tp 2
  EXPECT_EQ(l->vocab_per_tp_rank, 256);
  EXPECT_EQ(l->schedule, PipelineScheduleKind::kInterleaved);
  EXPECT_EQ(l->recompute, Recompute::kSelective);
  EXPECT_TRUE(l->sequence_parallel);
  EXPECT_TRUE(l->distributed_optimizer);
  EXPECT_FALSE(l->bf16);
  EXPECT_EQ(l->steps_this_run, 4);
  EXPECT_EQ(l->chunk_layers, (std::vector<int>{1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(l->FirstLayerOf(1, 2), 5);  // chunk 2 of stage 1 = model chunk 2 * 2 + 1
  EXPECT_EQ(l->model.padded_vocab, 512);
  EXPECT_TRUE(l->config.has_logging()) << "the layout keeps the config with its defaults";
  const PipelineShape shape = l->pipeline_shape();
  EXPECT_EQ(shape.stages, 2);
  EXPECT_EQ(shape.micro_batches, 4);
  EXPECT_EQ(shape.virtual_stages, 3);
}

TEST(JobLayoutTest, SequenceParallelismNeedsMoreThanOneTensorRank) {
  auto config = ParseJobConfigText(kJob, "job");
  ASSERT_TRUE(config.ok());
  config->mutable_parallel()->set_tp(1);
  auto l = JobLayout::Create(*config, 4);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_FALSE(l->sequence_parallel);
}

TEST(JobLayoutTest, AConfigWithProblemsHasNoLayoutAndEveryProblemIsNamed) {
  auto config = ParseJobConfigText(kJob, "job");
  ASSERT_TRUE(config.ok());
  config->mutable_parallel()->set_global_batch_size(12);  // 12 / (2 * 2) = 3, not a multiple of pp
  auto l = JobLayout::Create(*config, 6);                 // not divisible by tp * pp = 4 either
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(l.status().message(), "world size 6 is not divisible"))
      << l.status();
}

TEST(JobLayoutTest, ConfigEnumsMapToTheirKinds) {
  EXPECT_EQ(PipelineScheduleFromConfig(ParallelConfig::ONE_F_ONE_B),
            PipelineScheduleKind::kOneFOneB);
  EXPECT_EQ(PipelineScheduleFromConfig(ParallelConfig::INTERLEAVED),
            PipelineScheduleKind::kInterleaved);
  EXPECT_EQ(PipelineScheduleFromConfig(ParallelConfig::GPIPE), PipelineScheduleKind::kGPipe);
  EXPECT_EQ(RecomputeFromConfig(ParallelConfig::NONE), Recompute::kNone);
  EXPECT_EQ(RecomputeFromConfig(ParallelConfig::SELECTIVE), Recompute::kSelective);
  EXPECT_EQ(RecomputeFromConfig(ParallelConfig::FULL), Recompute::kFull);
}

}  // namespace
}  // namespace loom
