// CUDA vs CPU for ops/embedding.h (label gpu; skips without a device).
// Forward is a copy plus one add: fp32 matches the CPU exactly, bf16 to one rounding
// (rtol 1e-2). Backward sums a token's rows in fp32 before adding them to dwte, the CPU adds
// them one by one: rtol 1e-5, atol 1e-5 in fp32; bf16 gradients rtol 2e-2, atol 2e-2. The GPU
// backward must also be bitwise reproducible.
#include <vector>

#include "gtest/gtest.h"
#include "ops/embedding.h"
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

struct EmbCase {
  int64_t b, t, c, v, vocab_start;
  bool with_wpe;
  DType dtype;       // wte, wpe, out, dout
  DType grad_dtype;  // dwte, dwpe
};

// Tokens drawn from [0, vocab_start + v + 3): some below and above this rank's slice, and a
// skewed distribution (token vocab_start appears often) so runs of equal rows are long.
std::vector<int32_t> Tokens(const EmbCase& k) {
  const auto u = RandomDoubles(k.b * k.t, 99, 0.0, 1.0);
  std::vector<int32_t> tok(u.size());
  const int64_t hi = k.vocab_start + k.v + 3;
  for (size_t i = 0; i < u.size(); ++i) {
    tok[i] = u[i] < 0.2 ? static_cast<int32_t>(k.vocab_start)
                        : static_cast<int32_t>(u[i] * hi) % static_cast<int32_t>(hi);
  }
  return tok;
}

class EmbeddingGpuTest : public ::testing::TestWithParam<EmbCase> {};

TEST_P(EmbeddingGpuTest, ForwardMatchesCpu) {
  LOOM_SKIP_WITHOUT_CUDA();
  const EmbCase k = GetParam();
  const int64_t max_t = k.t + 3;
  const auto tok = Tokens(k);
  const auto wte_v = RoundTo(RandomFloats(k.v * k.c, 1), k.dtype);
  const auto wpe_v = RoundTo(RandomFloats(max_t * k.c, 2), k.dtype);
  Tensor tokens = *Tensor::FromVectorI32(tok, {k.b, k.t}).To(Gpu());
  Tensor wte = MakeTensor(wte_v, {k.v, k.c}, k.dtype, Gpu());
  Tensor wpe = MakeTensor(wpe_v, {max_t, k.c}, k.dtype, Gpu());
  Tensor out = *Tensor::Zeros({k.b, k.t, k.c}, k.dtype, Gpu());
  ASSERT_TRUE(EmbeddingForward(tokens, wte, k.with_wpe ? &wpe : nullptr, out, k.vocab_start).ok());

  Tensor c_wpe = Tensor::FromVector(wpe_v, {max_t, k.c});
  Tensor c_out = *Tensor::Zeros({k.b, k.t, k.c}, DType::kF32, CpuDevice());
  ASSERT_TRUE(EmbeddingForward(Tensor::FromVectorI32(tok, {k.b, k.t}),
                               Tensor::FromVector(wte_v, {k.v, k.c}), k.with_wpe ? &c_wpe : nullptr,
                               c_out, k.vocab_start)
                  .ok());
  const double tol = k.dtype == DType::kF32 ? 0.0 : 1e-2;
  EXPECT_TRUE(AllClose(HostValues(out), HostValues(c_out), tol, tol));
}

TEST_P(EmbeddingGpuTest, BackwardMatchesCpuAndIsReproducible) {
  LOOM_SKIP_WITHOUT_CUDA();
  const EmbCase k = GetParam();
  const int64_t max_t = k.t + 3;
  const auto tok = Tokens(k);
  const auto dout_v = RoundTo(RandomFloats(k.b * k.t * k.c, 3), k.dtype);
  const auto dwte0 = RoundTo(RandomFloats(k.v * k.c, 4), k.grad_dtype);
  const auto dwpe0 = RoundTo(RandomFloats(max_t * k.c, 5), k.grad_dtype);
  Tensor tokens = *Tensor::FromVectorI32(tok, {k.b, k.t}).To(Gpu());
  Tensor dout = MakeTensor(dout_v, {k.b, k.t, k.c}, k.dtype, Gpu());
  auto run = [&](std::vector<float>* dwte_out, std::vector<float>* dwpe_out) {
    Tensor dwte = MakeTensor(dwte0, {k.v, k.c}, k.grad_dtype, Gpu());
    Tensor dwpe = MakeTensor(dwpe0, {max_t, k.c}, k.grad_dtype, Gpu());
    ASSERT_TRUE(
        EmbeddingBackward(tokens, dout, dwte, k.with_wpe ? &dwpe : nullptr, k.vocab_start).ok());
    *dwte_out = HostValues(dwte);
    *dwpe_out = HostValues(dwpe);
  };
  std::vector<float> dwte1, dwpe1, dwte2, dwpe2;
  run(&dwte1, &dwpe1);
  run(&dwte2, &dwpe2);
  EXPECT_EQ(dwte1, dwte2);
  EXPECT_EQ(dwpe1, dwpe2);

  Tensor c_dwte = Tensor::FromVector(dwte0, {k.v, k.c});
  Tensor c_dwpe = Tensor::FromVector(dwpe0, {max_t, k.c});
  ASSERT_TRUE(EmbeddingBackward(Tensor::FromVectorI32(tok, {k.b, k.t}),
                                Tensor::FromVector(dout_v, {k.b, k.t, k.c}), c_dwte,
                                k.with_wpe ? &c_dwpe : nullptr, k.vocab_start)
                  .ok());
  const double tol = k.grad_dtype == DType::kF32 ? 1e-5 : 2e-2;
  EXPECT_TRUE(AllClose(dwte1, HostValues(c_dwte), tol, tol));
  EXPECT_TRUE(AllClose(dwpe1, HostValues(c_dwpe), tol, tol));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, EmbeddingGpuTest,
    ::testing::Values(EmbCase{4, 32, 96, 50, 0, true, DType::kF32, DType::kF32},
                      // Vocab slice [20, 70), C not a multiple of a warp's 256 channels.
                      EmbCase{3, 17, 300, 50, 20, true, DType::kF32, DType::kF32},
                      // C not a multiple of the vector width: scalar forward path.
                      EmbCase{2, 9, 13, 11, 0, false, DType::kF32, DType::kF32},
                      EmbCase{4, 32, 96, 50, 0, true, DType::kBF16, DType::kF32},
                      EmbCase{4, 32, 96, 50, 10, false, DType::kBF16, DType::kBF16}));

}  // namespace
}  // namespace loom::ops
