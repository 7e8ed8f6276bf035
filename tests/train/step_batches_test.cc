// StepBatches (train/step_batches.h) on the test device: a step's batches reach the device
// without a host wait; a prefetch reads the next step's while the loader's saved position stays
// at the batches used, and the batches a resume from that position reads are the prefetched
// ones. With context parallelism and fine-tuning data a rank gets its chunks of the tokens and
// the whole sequences' segment ids.
#include "train/step_batches.h"

#include <vector>

#include "data/token_flags.h"
#include "data/token_shard.h"
#include "gtest/gtest.h"
#include "parallel/ring_attention.h"
#include "runtime/files.h"
#include "runtime/test_device.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

constexpr int kAccum = 2, kMicro = 2, kT = 8;

class StepBatchesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<uint16_t> ids;
    for (int i = 0; i < 2000; ++i) ids.push_back(static_cast<uint16_t>((i * 37) % 251));
    shard_ = tmp_.path() + "/train_000.bin";
    ASSERT_TRUE(WriteShard(shard_, ids, ShardFormat::kLlmc).ok());
  }
  std::unique_ptr<DataLoader> Loader() {
    DataLoaderOptions o;
    o.patterns = {shard_};
    o.vocab_size = 257;
    o.seq_len = kT;
    o.seed = 7;
    auto l = DataLoader::Open(o);
    EXPECT_TRUE(l.ok()) << l.status();
    return std::move(*l);
  }
  // The step's token ids as the device holds them: inputs then targets, per micro-batch.
  static std::vector<int32_t> OnDevice(const StepBatches& b) {
    std::vector<int32_t> out;
    for (int k = 0; k < kAccum; ++k) {
      for (const Tensor* t : {&b.inputs()[k], &b.targets()[k]}) {
        std::vector<int32_t> ids(t->numel());
        EXPECT_TRUE(CopyBytes(CpuDevice(), ids.data(), t->device(), t->data(), t->nbytes()).ok());
        out.insert(out.end(), ids.begin(), ids.end());
      }
    }
    return out;
  }
  // What a loader reads for one step from `position`.
  std::vector<int32_t> StepFrom(const DataLoaderState& position) {
    auto l = Loader();
    EXPECT_TRUE(l->SetState(position).ok());
    std::vector<int32_t> out;
    for (int k = 0; k < kAccum; ++k) {
      std::vector<int32_t> in(kMicro * kT), tg(kMicro * kT);
      EXPECT_TRUE(l->NextBatch(kMicro, absl::MakeSpan(in), absl::MakeSpan(tg)).ok());
      out.insert(out.end(), in.begin(), in.end());
      out.insert(out.end(), tg.begin(), tg.end());
    }
    return out;
  }

  testing::ScopedTempDir tmp_{"step_batches"};
  std::string shard_;
};

TEST_F(StepBatchesTest, APrefetchReadsAheadWithoutMovingTheSavedPosition) {
  auto dev = TestDevice(0);
  ASSERT_TRUE(dev.ok());
  Device* d = *dev;
  auto loader = Loader();
  auto b = StepBatches::Create(d, loader.get(), kAccum, kMicro, kT);
  ASSERT_TRUE(b.ok()) << b.status();
  const DataLoaderState start = (*b)->consumed_position();
  const int64_t syncs = d->host_syncs(), bytes = d->bytes_from_host();
  ASSERT_TRUE((*b)->Next().ok());
  const DataLoaderState one = (*b)->consumed_position();
  const int64_t step_syncs = d->host_syncs();
  ASSERT_TRUE((*b)->Prefetch().ok());
  EXPECT_TRUE((*b)->prefetched());
  // The loader has read step 2; the position a checkpoint saves is still after step 1.
  EXPECT_EQ((*b)->consumed_position(), one);
  EXPECT_NE(loader->GetState(), one);
  // Staged and queued, never waited for: two steps of inputs and targets went to the device.
  EXPECT_EQ(step_syncs, syncs);
  EXPECT_EQ(d->host_syncs(), syncs);
  EXPECT_EQ(d->bytes_from_host() - bytes, 2 * 2 * kAccum * kMicro * kT * 4);
  ASSERT_TRUE((*b)->Next().ok());
  EXPECT_FALSE((*b)->prefetched());
  // Step 2 (the prefetched one) is what a loader resumed at the saved position reads.
  EXPECT_EQ(OnDevice(**b), StepFrom(one));
  EXPECT_EQ((*b)->consumed_position(), loader->GetState());
  EXPECT_NE(StepFrom(one), StepFrom(start));
}

TEST_F(StepBatchesTest, WithoutAPrefetchNextReadsTheStepThenAndTheDeviceHasIt) {
  auto dev = TestDevice(0);
  ASSERT_TRUE(dev.ok());
  auto loader = Loader();
  auto b = StepBatches::Create(*dev, loader.get(), kAccum, kMicro, kT);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*b)->Next().ok());
  EXPECT_EQ(OnDevice(**b), StepFrom(DataLoaderState{}));
  EXPECT_EQ((*b)->consumed_position(), loader->GetState());
}

TEST_F(StepBatchesTest, OnTheCpuTheStepsTensorsAreTheStagingAndAlternate) {
  auto loader = Loader();
  auto b = StepBatches::Create(CpuDevice(), loader.get(), kAccum, kMicro, kT);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*b)->Next().ok());
  const DataLoaderState one = (*b)->consumed_position();
  const std::vector<int32_t> first = OnDevice(**b);
  EXPECT_EQ(first, StepFrom(DataLoaderState{}));
  ASSERT_TRUE((*b)->Prefetch().ok());
  // The prefetch wrote the other buffer: the current step's tensors are untouched.
  EXPECT_EQ(OnDevice(**b), first);
  ASSERT_TRUE((*b)->Next().ok());
  EXPECT_EQ(OnDevice(**b), StepFrom(one));
}

// Context parallelism with fine-tuning data: each cp rank's inputs and targets are its two
// chunks of the loader's sequences (and host_targets, which the trainer counts, the same), but
// the segment ids stay whole (micro x seq_len), as ring attention reads them by global position;
// on the test device (copies) and the CPU (views of the staging), for both staging buffers. The
// positions (data.reset_position_ids) restart at each document of the whole rows and are cut.
TEST_F(StepBatchesTest, WithCpTheSegmentIdsStayWholeAndTheTokensAreTheRanksChunks) {
  std::vector<uint16_t> ids;
  std::vector<uint8_t> flags;
  for (int i = 0; i < 2000; ++i) {
    ids.push_back(static_cast<uint16_t>((i * 37) % 251));
    flags.push_back(
        static_cast<uint8_t>((i % 5 == 0 ? kDocStartFlag : 0) | (i % 3 ? kLossFlag : 0)));
  }
  const std::string sft = tmp_.path() + "/sft_000.bin";
  ASSERT_TRUE(WriteShard(sft, ids, ShardFormat::kLlmc).ok());
  ASSERT_TRUE(WriteTokenFlags(TokenFlagsPath(sft), flags).ok());
  auto open = [&] {
    DataLoaderOptions o;
    o.patterns = {sft};
    o.vocab_size = 257;
    o.seq_len = kT;
    o.seed = 7;
    auto l = DataLoader::Open(o);
    EXPECT_TRUE(l.ok()) << l.status();
    return std::move(*l);
  };
  auto host = [](const Tensor& t) {
    std::vector<int32_t> v(t.numel());
    EXPECT_TRUE(CopyBytes(CpuDevice(), v.data(), t.device(), t.data(), t.nbytes()).ok());
    return v;
  };
  constexpr int kCp = 2;
  auto dev = TestDevice(0);
  ASSERT_TRUE(dev.ok());
  for (Device* d : {*dev, CpuDevice()}) {
    for (int rank = 0; rank < kCp; ++rank) {
      SCOPED_TRACE(::testing::Message() << d->Name() << ", cp rank " << rank);
      auto loader = open();
      ASSERT_TRUE(loader->has_loss_mask());
      auto reference = open();  // reads the same sequences whole
      auto b = StepBatches::Create(d, loader.get(), kAccum, kMicro, kT, kCp, rank,
                                   /*reset_positions=*/true);
      ASSERT_TRUE(b.ok()) << b.status();
      ASSERT_TRUE((*b)->masked());
      for (int step = 0; step < 2; ++step) {
        ASSERT_TRUE((*b)->Next().ok());
        for (int k = 0; k < kAccum; ++k) {
          std::vector<int32_t> in(kMicro * kT), tg(kMicro * kT), seg(kMicro * kT);
          ASSERT_TRUE(
              reference
                  ->NextBatch(kMicro, absl::MakeSpan(in), absl::MakeSpan(tg), absl::MakeSpan(seg))
                  .ok());
          std::vector<int32_t> in_r(kMicro * kT / kCp), tg_r(kMicro * kT / kCp);
          ASSERT_TRUE(SelectContextChunks(in.data(), kMicro, kT, kCp, rank, in_r.data()).ok());
          ASSERT_TRUE(SelectContextChunks(tg.data(), kMicro, kT, kCp, rank, tg_r.data()).ok());
          EXPECT_EQ((*b)->segments()[k].shape(), (Shape{kMicro, kT}));
          EXPECT_EQ(host((*b)->segments()[k]), seg) << "step " << step << " micro-batch " << k;
          EXPECT_EQ(host((*b)->inputs()[k]), in_r);
          EXPECT_EQ(host((*b)->targets()[k]), tg_r);
          const absl::Span<const int32_t> counted = (*b)->host_targets(k);
          EXPECT_EQ(std::vector<int32_t>(counted.begin(), counted.end()), tg_r);
          // Positions restart at each document of the whole rows, then are cut like the tokens.
          std::vector<int32_t> pos(kMicro * kT), pos_r(kMicro * kT / kCp);
          ASSERT_TRUE(ResetPositions(seg.data(), kMicro, kT, 1, 0, pos.data()).ok());
          ASSERT_TRUE(SelectContextChunks(pos.data(), kMicro, kT, kCp, rank, pos_r.data()).ok());
          EXPECT_EQ(host((*b)->positions()[k]), pos_r);
        }
        // The next step into the other staging buffer (on a device its copies land in the same
        // device tensors, after the reads above).
        ASSERT_TRUE((*b)->Prefetch().ok());
      }
    }
  }
}

}  // namespace
}  // namespace loom
