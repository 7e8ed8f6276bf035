// Supervised fine-tuning data end to end against PyTorch (tests/fixtures/model/sft_*.bin from
// tools/gen_sft_fixture.py): a shard with a token-flags side file (loss mask, and for the packed
// variant document starts) trains the fixture models, and
//   - the model's loss and every parameter's gradient equal PyTorch's masked cross-entropy (the
//     mean over the counted targets of the batch; block-diagonal attention when packed, with
//     positions reset at each document start by default and running across documents with
//     data.reset_position_ids false),
//   - the trainer's losses and gradient norms over 4 AdamW steps equal PyTorch's with the batch
//     whole, as 2 micro-batches of 2 and as 4 micro-batches of 1 (one of them with no counted
//     target): the mean is over the global batch, not per micro-batch;
// and the loader turns flags into targets of -1 and segment ids, refusing a side file that
// does not fit its shard and a run where only some shards have one.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data/data_loader.h"
#include "data/token_flags.h"
#include "data/token_shard.h"
#include "gtest/gtest.h"
#include "parallel/world.h"
#include "tests/train/job_testing.h"
#include "train/step_batches.h"
#include "train/trainer.h"

namespace loom {
namespace {

constexpr double kRtol = 1e-5;
constexpr double kFloor = 1e-5;

std::vector<int32_t> Ints(const Tensor& t) {
  return std::vector<int32_t>(t.data_as<const int32_t>(), t.data_as<const int32_t>() + t.numel());
}

struct SftCase {
  std::string family;   // gpt2 / llama
  std::string variant;  // masked / packed (positions reset) / packed_noreset
};
void PrintTo(const SftCase& c, std::ostream* os) { *os << c.family << " " << c.variant; }

class SftGoldenTest : public ::testing::TestWithParam<SftCase> {
 protected:
  void SetUp() override {
    auto fx = testing::LoadModelFixture(GetParam().family);
    ASSERT_TRUE(fx.ok()) << fx.status();
    model_fx_ = std::move(*fx);
    auto sft = testing::LoadModelFixture("sft_" + GetParam().family);
    ASSERT_TRUE(sft.ok()) << sft.status();
    sft_ = std::move(*sft);
  }
  std::string V(const std::string& key) const { return GetParam().variant + "/" + key; }
  bool packed() const { return GetParam().variant != "masked"; }
  bool reset() const { return GetParam().variant == "packed"; }
  testing::Fixture model_fx_, sft_;
};

TEST_P(SftGoldenTest, ModelLossAndGradientsMatchPyTorch) {
  auto model = testing::ModelFromFixture(model_fx_);
  ASSERT_TRUE(model.ok()) << model.status();
  const int64_t B = *sft_.Int("B"), T = *sft_.Int("T");
  const std::vector<int32_t> stream = Ints(*sft_.Get("stream"));
  std::vector<int32_t> tokens;
  for (int64_t b = 0; b < B; ++b) {
    tokens.insert(tokens.end(), stream.begin() + b * T, stream.begin() + b * T + T);
  }
  const std::vector<int32_t> targets = Ints(*sft_.Get(V("targets")));
  const std::vector<int32_t> segs = Ints(*sft_.Get(V("segments")));
  int64_t counted = 0;
  for (int32_t t : targets) counted += t >= 0;
  auto view = [&](const std::vector<int32_t>& v) {
    return Tensor::View(const_cast<int32_t*>(v.data()), Shape{B, T}, DType::kI32, CpuDevice());
  };
  std::vector<int32_t> positions(B * T);
  if (packed()) (*model)->SetSegments({view(segs)});
  if (reset()) {
    // The trainer's reset (train/step_batches.h) gives the reference's positions.
    ASSERT_TRUE(ResetPositions(segs.data(), B, T, 1, 0, positions.data()).ok());
    ASSERT_EQ(positions, Ints(*sft_.Get(V("positions"))));
    (*model)->SetPositions({view(positions)});
  }
  ASSERT_TRUE((*model)->ZeroGrads().ok());
  // Weight N / count: the gradient of (sum of counted losses) / count, as the trainer sets it.
  const float weight = static_cast<float>(B * T) / static_cast<float>(counted);
  auto loss = (*model)->ForwardBackward(view(tokens), view(targets), weight);
  ASSERT_TRUE(loss.ok()) << loss.status();
  const double got = static_cast<double>(*loss) * static_cast<double>(B * T) / counted;
  const double want = *sft_.Float(V("loss"));
  EXPECT_NEAR(got, want, kRtol * want);
  if (!sft_.Get(V("grad/" + (*model)->layout().specs()[0].name)).ok()) return;  // loss only
  for (const ParamSpec& s : (*model)->layout().specs()) {
    EXPECT_TRUE(
        testing::MatchesFixtureScaled((*model)->Grad(s), sft_, V("grad/" + s.name), 1e-4, kFloor))
        << s.name;
  }
}

TEST_P(SftGoldenTest, TrainerStepsMatchPyTorchForAnyMicroBatching) {
  const testing::ScopedTempDir tmp("sft_golden");
  const int64_t B = *sft_.Int("B");
  const std::vector<int32_t> stream = Ints(*sft_.Get("stream"));
  const std::vector<int32_t> flags = Ints(*sft_.Get(V("flags")));
  const std::string shard = tmp.path() + "/sft_train.bin";
  ASSERT_TRUE(
      WriteShard(shard, std::vector<uint16_t>(stream.begin(), stream.end()), ShardFormat::kLlmc)
          .ok());
  ASSERT_TRUE(
      WriteTokenFlags(TokenFlagsPath(shard), std::vector<uint8_t>(flags.begin(), flags.end()))
          .ok());
  const auto want_loss = *sft_.Get(V("step_losses"));
  const auto want_norm = *sft_.Get(V("grad_norms"));
  for (int micro : {4, 2, 1}) {
    SCOPED_TRACE(::testing::Message() << "micro-batch " << micro);
    auto job = testing::FixtureJob(model_fx_, GetParam().family, tmp.path(), micro);
    ASSERT_TRUE(job.ok()) << job.status();
    job->mutable_data()->set_train(shard);
    job->mutable_parallel()->set_global_batch_size(static_cast<int>(B));
    job->mutable_data()->set_seq_len(static_cast<int>(*sft_.Int("T")));
    job->mutable_data()->set_reset_position_ids(GetParam().variant != "packed_noreset");
    auto trainer = Trainer::Create(*job, *World::Get());
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    for (int k = 0; k < want_loss.numel(); ++k) {
      auto loss = (*trainer)->Step();
      ASSERT_TRUE(loss.ok()) << loss.status();
      const float wl = want_loss.data_as<float>()[k], wn = want_norm.data_as<float>()[k];
      EXPECT_NEAR(*loss, wl, 2 * kRtol * wl) << "step " << k + 1;
      EXPECT_NEAR((*trainer)->last_grad_norm(), wn, 1e-4 * wn) << "step " << k + 1;
    }
  }
}

// The GPU's control path (runtime.backend TEST: segment ids and targets reach the device by
// copies, losses are read back once per step) gives the CPU's losses bit for bit.
TEST_P(SftGoldenTest, TestDeviceMatchesCpuBitForBit) {
  if (GetParam().variant == "packed_noreset") GTEST_SKIP() << "the packed case covers it";
  const testing::ScopedTempDir tmp("sft_device");
  const std::vector<int32_t> stream = Ints(*sft_.Get("stream"));
  const std::vector<int32_t> flags = Ints(*sft_.Get(V("flags")));
  const std::string shard = tmp.path() + "/sft_train.bin";
  ASSERT_TRUE(
      WriteShard(shard, std::vector<uint16_t>(stream.begin(), stream.end()), ShardFormat::kLlmc)
          .ok());
  ASSERT_TRUE(
      WriteTokenFlags(TokenFlagsPath(shard), std::vector<uint8_t>(flags.begin(), flags.end()))
          .ok());
  std::vector<float> losses[2];
  for (int device = 0; device < 2; ++device) {
    auto job = testing::FixtureJob(model_fx_, GetParam().family, tmp.path(), 2);
    ASSERT_TRUE(job.ok()) << job.status();
    job->mutable_data()->set_train(shard);
    job->mutable_data()->set_val(shard);
    job->mutable_logging()->set_eval_batches(2);
    job->mutable_parallel()->set_global_batch_size(static_cast<int>(*sft_.Int("B")));
    job->mutable_data()->set_seq_len(static_cast<int>(*sft_.Int("T")));
    if (device == 1) job->mutable_runtime()->set_backend(RuntimeConfig::TEST);
    auto trainer = Trainer::Create(*job, *World::Get());
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    for (int k = 0; k < 3; ++k) {
      auto loss = (*trainer)->Step();
      ASSERT_TRUE(loss.ok()) << loss.status();
      losses[device].push_back(*loss);
    }
    auto val = (*trainer)->Evaluate();
    ASSERT_TRUE(val.ok()) << val.status();
    losses[device].push_back(*val);
  }
  EXPECT_EQ(losses[0], losses[1]);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SftGoldenTest,
                         ::testing::Values(SftCase{"gpt2", "masked"}, SftCase{"gpt2", "packed"},
                                           SftCase{"gpt2", "packed_noreset"},
                                           SftCase{"llama", "masked"}, SftCase{"llama", "packed"},
                                           SftCase{"llama", "packed_noreset"}),
                         [](const auto& info) {
                           return info.param.family + "_" + info.param.variant;
                         });

TEST(SftDataTest, LoaderMasksTargetsAndNumbersSegments) {
  const testing::ScopedTempDir tmp("sft_loader");
  const std::string shard = tmp.path() + "/a.bin";
  // 9 tokens, one sample of T = 8: documents start at 0, 3 and 6; tokens 2, 4, 5 and 8 count.
  ASSERT_TRUE(WriteShard(shard, {10, 11, 12, 13, 14, 15, 16, 17, 18}, ShardFormat::kLlmc).ok());
  const std::vector<uint8_t> flags = {kDocStartFlag, 0,         kLossFlag,
                                      kDocStartFlag, kLossFlag, kLossFlag,
                                      kDocStartFlag, 0,         kLossFlag};
  ASSERT_TRUE(WriteTokenFlags(TokenFlagsPath(shard), flags).ok());
  DataLoaderOptions o;
  o.patterns = {shard};
  o.vocab_size = 64;
  o.seq_len = 8;
  o.shuffle = false;
  auto loader = DataLoader::Open(o);
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_TRUE((*loader)->has_loss_mask());
  std::vector<int32_t> in(8), tg(8), seg(8);
  ASSERT_TRUE(
      (*loader)->NextBatch(1, absl::MakeSpan(in), absl::MakeSpan(tg), absl::MakeSpan(seg)).ok());
  EXPECT_EQ(tg, (std::vector<int32_t>{-1, 12, -1, 14, 15, -1, -1, 18}));
  EXPECT_EQ(seg, (std::vector<int32_t>{0, 0, 0, 1, 1, 1, 2, 2}));

  // A side file whose count differs from its shard is named.
  ASSERT_TRUE(WriteTokenFlags(TokenFlagsPath(shard), std::vector<uint8_t>(8, 1)).ok());
  auto bad = DataLoader::Open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("header says 8 tokens at byte 8, but its shard holds 9"),
            std::string::npos)
      << bad.status();
  // Some shards with flags and some without.
  ASSERT_TRUE(WriteTokenFlags(TokenFlagsPath(shard), flags).ok());
  const std::string other = tmp.path() + "/b.bin";
  ASSERT_TRUE(WriteShard(other, {1, 2, 3, 4, 5, 6, 7, 8, 9}, ShardFormat::kLlmc).ok());
  o.patterns = {tmp.path() + "/*.bin"};
  auto mixed = DataLoader::Open(o);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("either every shard of a run carries a loss mask"),
            std::string::npos)
      << mixed.status();
}

}  // namespace
}  // namespace loom
