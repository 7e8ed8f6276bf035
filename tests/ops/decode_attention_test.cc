// DecodeAttention on the CPU: rows [pos0, pos0 + n) of causal attention over a cache equal the
// same rows of AttentionForward on the whole sequence (MHA and GQA, one new token and several),
// and bad arguments are named.
#include "ops/decode_attention.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/attention.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::RandomFloats;

TEST(DecodeAttentionTest, EqualsTheFullForwardRows) {
  struct Case {
    int64_t len, pos0, n;
    int nh, nkv, hd;
  };
  for (const Case& c :
       {Case{9, 8, 1, 4, 4, 8}, Case{70, 64, 6, 6, 2, 16}, Case{5, 0, 5, 2, 1, 4}}) {
    SCOPED_TRACE(::testing::Message() << "len " << c.len << " pos0 " << c.pos0 << " n " << c.n);
    const int64_t w = static_cast<int64_t>(c.nh + 2 * c.nkv) * c.hd, ow = int64_t{c.nh} * c.hd;
    const auto x = RandomFloats(c.len * w, 9, -2.0f, 2.0f);
    const int64_t upto = c.pos0 + c.n;
    std::vector<float> prefix(x.begin(), x.begin() + upto * w);
    Tensor out = *Tensor::Zeros(Shape{1, upto, ow}, DType::kF32, CpuDevice());
    Tensor lse = *Tensor::Zeros(Shape{1, c.nh, upto}, DType::kF32, CpuDevice());
    ASSERT_TRUE(
        AttentionForward(Tensor::FromVector(prefix, {1, upto, w}), c.nh, c.nkv, out, lse).ok());
    Tensor got = *Tensor::Zeros(Shape{c.n, ow}, DType::kF32, CpuDevice());
    ASSERT_TRUE(
        DecodeAttention(Tensor::FromVector(x, {c.len, w}), c.nh, c.nkv, c.pos0, c.n, got).ok());
    const auto all = *out.ToFloatVector();
    std::vector<double> want(all.begin() + c.pos0 * ow, all.begin() + upto * ow);
    EXPECT_TRUE(AllClose(*got.ToFloatVector(), want, 1e-5, 1e-6));
  }
}

TEST(DecodeAttentionTest, BadArgumentsAreNamed) {
  Tensor cache = *Tensor::Zeros(Shape{4, 12}, DType::kF32, CpuDevice());
  Tensor out = *Tensor::Zeros(Shape{2, 4}, DType::kF32, CpuDevice());
  absl::Status s = DecodeAttention(cache, 1, 1, 3, 2, out);
  EXPECT_NE(std::string(s.message()).find("positions [3, 5) do not fit the cache's 4 rows"),
            std::string::npos)
      << s;
  s = DecodeAttention(cache, 2, 1, 0, 2, out);  // 12 / (2 + 2) = HD 3: out must be [2, 6]
  EXPECT_NE(std::string(s.message()).find("out"), std::string::npos) << s;
}

}  // namespace
}  // namespace loom::ops
