// Top-k sampling (model/sampling.h): deterministic per (seed, draw), only the k best real-vocab
// ids, never a padded row, and a dominant logit always wins.
#include "model/sampling.h"

#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace loom {
namespace {

Tensor Logits(std::vector<float>& v, int64_t rows) {
  return Tensor::View(v.data(), Shape{rows, static_cast<int64_t>(v.size()) / rows}, DType::kF32,
                      CpuDevice());
}

TEST(SamplingTest, SameSeedSameTokenAndOnlyTheTopK) {
  std::vector<float> v(2 * 16);
  for (int i = 0; i < 16; ++i) v[16 + i] = static_cast<float>(i % 8) * 0.1f;
  Tensor logits = Logits(v, 2);
  std::set<int32_t> seen;
  for (uint64_t draw = 0; draw < 200; ++draw) {
    auto a = SampleTopK(logits, 1, 12, 16, nullptr, 7, draw, 3);
    auto b = SampleTopK(logits, 1, 12, 16, nullptr, 7, draw, 3);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(*a, *b);
    seen.insert(*a);
  }
  // The three largest of the real ids 0..11 are 7, 6 and 5 (0.7, 0.6, 0.5); with logits this
  // close each is drawn in 200 tries.
  EXPECT_EQ(seen, (std::set<int32_t>{5, 6, 7}));
}

TEST(SamplingTest, ADominantLogitAlwaysWinsAndPaddedRowsNeverDo) {
  std::vector<float> v(10, 0.0f);
  v[3] = 80.0f;    // dominant
  v[9] = 1000.0f;  // a padded row (vocab 8 of 10): must be ignored
  Tensor logits = Logits(v, 1);
  for (uint64_t draw = 0; draw < 50; ++draw) {
    auto t = SampleTopK(logits, 0, 8, 10, nullptr, 1, draw);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(*t, 3);
  }
}

TEST(SamplingTest, BadArgumentsAreErrors) {
  std::vector<float> v(8, 0.0f);
  Tensor logits = Logits(v, 1);
  EXPECT_FALSE(SampleTopK(logits, 1, 8, 8, nullptr, 0, 0).ok()) << "row out of range";
  EXPECT_FALSE(SampleTopK(logits, 0, 9, 8, nullptr, 0, 0).ok()) << "vocab above padded";
  EXPECT_FALSE(SampleTopK(logits, 0, 4, 16, nullptr, 0, 0).ok()) << "a slice without its group";
}

}  // namespace
}  // namespace loom
