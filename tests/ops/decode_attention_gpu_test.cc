// CUDA vs CPU for DecodeAttention (label gpu; skips without a device): f32 and bf16 caches,
// one and several new tokens, MHA and GQA, HD 64 and 128, a cache longer than one block's
// stride of keys. Tolerances as attention_gpu_test.cc's forward.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/decode_attention.h"
#include "tests/ops/gpu_test_util.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Gpu;
using ::loom::testing::HostValues;
using ::loom::testing::MakeTensor;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

TEST(DecodeAttentionGpuTest, MatchesCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  struct Case {
    int64_t len, pos0, n;
    int nh, nkv, hd;
  };
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (const Case& c :
         {Case{300, 299, 1, 4, 4, 64}, Case{130, 120, 10, 6, 2, 128}, Case{7, 0, 7, 2, 1, 40}}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dt) << " len " << c.len << " n " << c.n);
      const int64_t w = static_cast<int64_t>(c.nh + 2 * c.nkv) * c.hd, ow = int64_t{c.nh} * c.hd;
      const auto x = RoundTo(RandomFloats(c.len * w, 21, -2.0f, 2.0f), dt);
      Tensor cpu_out = *Tensor::Zeros(Shape{c.n, ow}, DType::kF32, CpuDevice());
      ASSERT_TRUE(
          DecodeAttention(Tensor::FromVector(x, {c.len, w}), c.nh, c.nkv, c.pos0, c.n, cpu_out)
              .ok());
      Tensor gpu_out = MakeTensor(std::vector<float>(c.n * ow, NAN), Shape{c.n, ow}, dt, Gpu());
      ASSERT_TRUE(DecodeAttention(MakeTensor(x, Shape{c.len, w}, dt, Gpu()), c.nh, c.nkv, c.pos0,
                                  c.n, gpu_out)
                      .ok());
      const bool f32 = dt == DType::kF32;
      EXPECT_TRUE(
          AllClose(HostValues(gpu_out), HostValues(cpu_out), f32 ? 1e-4 : 2e-2, f32 ? 5e-5 : 2e-2));
    }
  }
}

}  // namespace
}  // namespace loom::ops
