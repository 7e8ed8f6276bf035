// CUDA vs CPU for per-token position ids (label gpu; skips without a device): the position
// embedding's forward (wpe row by position id, vector and scalar paths) and backward (dwpe as a
// scatter-add through the position-keyed sort: reproducible bit for bit, equal to the CPU's
// token-order sums to fp32 rounding), and RoPE forward and backward with each token at its own
// position. Positions as packed fine-tuning samples have them (restarting at each document) and
// as context-parallel chunks have them (global, past T). Tolerances as embedding_gpu_test.cc and
// rope_gpu_test.cc.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/embedding.h"
#include "ops/rope.h"
#include "tests/ops/gpu_test_util.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Gpu;
using ::loom::testing::HostValues;
using ::loom::testing::MakeTensor;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

// Rows of packed documents of varied lengths (restarting at 0), or with `chunks` the global
// positions of a cp rank's two chunks (t / 2 consecutive ones from 0, then from 3 t / 2).
std::vector<int32_t> PositionIds(int64_t b, int64_t t, bool chunks) {
  std::vector<int32_t> ids(b * t);
  const auto u = RandomDoubles(b * t, 77, 0.0, 1.0);
  for (int64_t r = 0; r < b; ++r) {
    int32_t p = 0;
    for (int64_t i = 0; i < t; ++i) {
      if (chunks) {
        ids[r * t + i] = static_cast<int32_t>(i < t / 2 ? i : t + i);
        continue;
      }
      if (i > 0 && u[r * t + i] < 0.15) p = 0;  // a document starts
      ids[r * t + i] = p++;
    }
  }
  return ids;
}

struct PosCase {
  int64_t b, t, c, v;
  bool chunks;
  DType dtype, grad_dtype;
};

class PositionIdsEmbeddingGpuTest : public ::testing::TestWithParam<PosCase> {};

TEST_P(PositionIdsEmbeddingGpuTest, ForwardAndBackwardMatchCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  const PosCase k = GetParam();
  const int64_t max_t = 2 * k.t;
  const auto ids = PositionIds(k.b, k.t, k.chunks);
  std::vector<int32_t> tok(k.b * k.t);
  for (int64_t i = 0; i < k.b * k.t; ++i) tok[i] = static_cast<int32_t>((7 * i + 3) % k.v);
  const auto wte_v = RoundTo(RandomFloats(k.v * k.c, 1), k.dtype);
  const auto wpe_v = RoundTo(RandomFloats(max_t * k.c, 2), k.dtype);
  Tensor tokens = *Tensor::FromVectorI32(tok, {k.b, k.t}).To(Gpu());
  Tensor pos = *Tensor::FromVectorI32(ids, {k.b, k.t}).To(Gpu());
  Tensor c_tokens = Tensor::FromVectorI32(tok, {k.b, k.t});
  Tensor c_pos = Tensor::FromVectorI32(ids, {k.b, k.t});

  Tensor wte = MakeTensor(wte_v, {k.v, k.c}, k.dtype, Gpu());
  Tensor wpe = MakeTensor(wpe_v, {max_t, k.c}, k.dtype, Gpu());
  Tensor out = *Tensor::Zeros({k.b, k.t, k.c}, k.dtype, Gpu());
  ASSERT_TRUE(EmbeddingForward(tokens, wte, &wpe, out, 0, &pos).ok());
  Tensor c_wpe = Tensor::FromVector(wpe_v, {max_t, k.c});
  Tensor c_out = *Tensor::Zeros({k.b, k.t, k.c}, DType::kF32, CpuDevice());
  ASSERT_TRUE(
      EmbeddingForward(c_tokens, Tensor::FromVector(wte_v, {k.v, k.c}), &c_wpe, c_out, 0, &c_pos)
          .ok());
  const double ftol = k.dtype == DType::kF32 ? 0.0 : 1e-2;
  EXPECT_TRUE(AllClose(HostValues(out), HostValues(c_out), ftol, ftol));

  const auto dout_v = RoundTo(RandomFloats(k.b * k.t * k.c, 3), k.dtype);
  const auto dwpe0 = RoundTo(RandomFloats(max_t * k.c, 5), k.grad_dtype);
  Tensor dout = MakeTensor(dout_v, {k.b, k.t, k.c}, k.dtype, Gpu());
  auto run = [&]() {
    Tensor dwte = *Tensor::Zeros({k.v, k.c}, k.grad_dtype, Gpu());
    Tensor dwpe = MakeTensor(dwpe0, {max_t, k.c}, k.grad_dtype, Gpu());
    EXPECT_TRUE(EmbeddingBackward(tokens, dout, dwte, &dwpe, 0, &pos).ok());
    return HostValues(dwpe);
  };
  const std::vector<float> dwpe1 = run(), dwpe2 = run();
  EXPECT_EQ(dwpe1, dwpe2);  // deterministic
  Tensor c_dwte = *Tensor::Zeros({k.v, k.c}, DType::kF32, CpuDevice());
  Tensor c_dwpe = Tensor::FromVector(dwpe0, {max_t, k.c});
  ASSERT_TRUE(EmbeddingBackward(c_tokens, Tensor::FromVector(dout_v, {k.b, k.t, k.c}), c_dwte,
                                &c_dwpe, 0, &c_pos)
                  .ok());
  const double btol = k.grad_dtype == DType::kF32 ? 1e-5 : 2e-2;
  EXPECT_TRUE(AllClose(dwpe1, HostValues(c_dwpe), btol, btol));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PositionIdsEmbeddingGpuTest,
    ::testing::Values(PosCase{4, 32, 96, 50, false, DType::kF32, DType::kF32},
                      PosCase{3, 40, 300, 50, true, DType::kF32, DType::kF32},
                      // C not a multiple of the vector width: the scalar forward path.
                      PosCase{2, 9, 13, 11, false, DType::kF32, DType::kF32},
                      PosCase{4, 32, 96, 50, false, DType::kBF16, DType::kF32},
                      PosCase{4, 32, 96, 50, true, DType::kBF16, DType::kBF16}));

class PositionIdsRopeGpuTest : public ::testing::TestWithParam<DType> {};

TEST_P(PositionIdsRopeGpuTest, ForwardAndBackwardMatchCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  const DType dt = GetParam();
  const double tol = dt == DType::kF32 ? 1e-5 : 1e-2;
  for (bool chunks : {false, true}) {
    const int64_t b = 2, t = 48;
    const int nh = 4, nkv = 2, hd = 64;
    const Shape s{b, t, static_cast<int64_t>(nh + 2 * nkv) * hd};
    const auto ids = PositionIds(b, t, chunks);
    Tensor pos = *Tensor::FromVectorI32(ids, {b, t}).To(Gpu());
    Tensor c_pos = Tensor::FromVectorI32(ids, {b, t});
    const auto x = RoundTo(RandomFloats(s.numel(), 1, -2.0f, 2.0f), dt);
    for (bool inverse : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "chunks " << chunks << " inverse " << inverse);
      Tensor g = MakeTensor(x, s, dt, Gpu());
      Tensor cpu = Tensor::FromVector(x, s);
      ASSERT_TRUE((inverse ? RopeBackward(g, nh, nkv, 10000.0f, 0, &pos)
                           : RopeForward(g, nh, nkv, 10000.0f, 0, &pos))
                      .ok());
      ASSERT_TRUE((inverse ? RopeBackward(cpu, nh, nkv, 10000.0f, 0, &c_pos)
                           : RopeForward(cpu, nh, nkv, 10000.0f, 0, &c_pos))
                      .ok());
      EXPECT_TRUE(AllClose(HostValues(g), HostValues(cpu), tol, tol));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, PositionIdsRopeGpuTest,
                         ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace loom::ops
