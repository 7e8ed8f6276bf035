// CPU tests of ops/embedding.h: forward and backward against naive loops (including the
// vocab-parallel slice and a null wpe), a finite-difference check of the double kernels, the
// exact token-order summation of the backward, and argument errors.
#include "ops/embedding.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/embedding.h"
#include "runtime/tensor.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Dot;
using ::loom::testing::GradientMatches;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;

std::vector<float> Values(const Tensor& t) {
  const float* p = t.data_as<float>();
  return std::vector<float>(p, p + t.numel());
}

constexpr int64_t kB = 2, kT = 5, kC = 6, kMaxT = 8;

TEST(EmbeddingForwardTest, AddsTokenAndPositionRows) {
  const int64_t v = 7;
  std::vector<int32_t> tok = {0, 3, 6, 3, 1, 2, 2, 5, 0, 4};
  auto wte_v = RandomFloats(v * kC, 1);
  auto wpe_v = RandomFloats(kMaxT * kC, 2);
  Tensor tokens = Tensor::FromVectorI32(tok, {kB, kT});
  Tensor wte = Tensor::FromVector(wte_v, {v, kC});
  Tensor wpe = Tensor::FromVector(wpe_v, {kMaxT, kC});
  Tensor out = *Tensor::Zeros({kB, kT, kC}, DType::kF32, CpuDevice());
  ASSERT_TRUE(EmbeddingForward(tokens, wte, &wpe, out).ok());
  std::vector<double> want(kB * kT * kC);
  for (int64_t bt = 0; bt < kB * kT; ++bt) {
    for (int64_t c = 0; c < kC; ++c) {
      want[bt * kC + c] = double(wte_v[tok[bt] * kC + c]) + wpe_v[(bt % kT) * kC + c];
    }
  }
  EXPECT_TRUE(AllClose(Values(out), want, 1e-7, 0.0));
}

TEST(EmbeddingForwardTest, VocabSliceZerosForeignTokensAndWpeIsOptional) {
  // This rank holds rows [4, 8) of a vocabulary of 12.
  const int64_t v = 4, start = 4;
  std::vector<int32_t> tok = {0, 4, 7, 8, 11, 5, 6, 3, 4, 10};
  auto wte_v = RandomFloats(v * kC, 3);
  Tensor tokens = Tensor::FromVectorI32(tok, {kB, kT});
  Tensor wte = Tensor::FromVector(wte_v, {v, kC});
  Tensor out = Tensor::FromVector(RandomFloats(kB * kT * kC, 4), {kB * kT, kC});
  ASSERT_TRUE(EmbeddingForward(tokens, wte, nullptr, out, start).ok());
  std::vector<double> want(kB * kT * kC, 0.0);
  for (int64_t bt = 0; bt < kB * kT; ++bt) {
    const int64_t row = tok[bt] - start;
    if (row < 0 || row >= v) continue;
    for (int64_t c = 0; c < kC; ++c) want[bt * kC + c] = wte_v[row * kC + c];
  }
  EXPECT_TRUE(AllClose(Values(out), want, 0.0, 0.0));
}

TEST(EmbeddingBackwardTest, AccumulatesInTokenOrderExactly) {
  const int64_t v = 9, start = 2;
  std::vector<int32_t> tok = {2, 5, 5, 10, 1, 5, 2, 9, 5, 3};
  auto dout_v = RandomFloats(kB * kT * kC, 5);
  auto dwte0 = RandomFloats(v * kC, 6);
  auto dwpe0 = RandomFloats(kMaxT * kC, 7);
  Tensor tokens = Tensor::FromVectorI32(tok, {kB, kT});
  Tensor dout = Tensor::FromVector(dout_v, {kB, kT, kC});
  Tensor dwte = Tensor::FromVector(dwte0, {v, kC});
  Tensor dwpe = Tensor::FromVector(dwpe0, {kMaxT, kC});
  ASSERT_TRUE(EmbeddingBackward(tokens, dout, dwte, &dwpe, start).ok());
  // The same float additions in token order: the result must match bit for bit, whatever
  // the thread count.
  std::vector<float> want_wte = dwte0, want_wpe = dwpe0;
  for (int64_t bt = 0; bt < kB * kT; ++bt) {
    const int64_t row = tok[bt] - start;
    for (int64_t c = 0; c < kC; ++c) {
      if (row >= 0 && row < v) want_wte[row * kC + c] += dout_v[bt * kC + c];
      want_wpe[(bt % kT) * kC + c] += dout_v[bt * kC + c];
    }
  }
  EXPECT_EQ(Values(dwte), want_wte);
  EXPECT_EQ(Values(dwpe), want_wpe);
}

TEST(EmbeddingGradCheck, MatchesFiniteDifferences) {
  const int64_t v = 5;
  std::vector<int32_t> tok = {1, 4, 1, 0, 3, 3, 2, 1, 7, 1};  // 7 is outside the table
  std::vector<double> wte = RandomDoubles(v * kC, 10);
  std::vector<double> wpe = RandomDoubles(kMaxT * kC, 11);
  const std::vector<double> probe = RandomDoubles(kB * kT * kC, 12);
  auto loss = [&]() {
    std::vector<double> out(kB * kT * kC);
    cpu::EmbeddingForward<double>(tok.data(), wte.data(), wpe.data(), out.data(), kB, kT, kC, v, 0);
    return Dot(out, probe);
  };
  std::vector<double> dwte(v * kC, 0.0), dwpe(kMaxT * kC, 0.0);
  cpu::EmbeddingBackward<double>(tok.data(), probe.data(), dwte.data(), dwpe.data(), kB, kT, kC, v,
                                 0);
  EXPECT_TRUE(GradientMatches(loss, &wte, dwte));
  EXPECT_TRUE(GradientMatches(loss, &wpe, dwpe));
}

TEST(EmbeddingErrorsTest, NameArgumentAndShapes) {
  Tensor tokens = Tensor::FromVectorI32(std::vector<int32_t>(kB * kT, 0), {kB, kT});
  Tensor wte = *Tensor::Zeros({7, kC}, DType::kF32, CpuDevice());
  Tensor short_wpe = *Tensor::Zeros({kT - 1, kC}, DType::kF32, CpuDevice());
  Tensor out = *Tensor::Zeros({kB, kT, kC}, DType::kF32, CpuDevice());
  absl::Status s = EmbeddingForward(tokens, wte, &short_wpe, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("wpe has shape [4, 6]; expected [maxT >= 5, 6]"),
            absl::string_view::npos)
      << s;

  Tensor bad_out = *Tensor::Zeros({kB, kT, kC + 1}, DType::kF32, CpuDevice());
  s = EmbeddingForward(tokens, wte, nullptr, bad_out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("out has shape [2, 5, 7]; expected [10, 6]"), absl::string_view::npos)
      << s;

  Tensor float_tokens = *Tensor::Zeros({kB, kT}, DType::kF32, CpuDevice());
  s = EmbeddingForward(float_tokens, wte, nullptr, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tokens must be i32"), absl::string_view::npos) << s;

  s = EmbeddingBackward(tokens, out, wte, nullptr, -1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("vocab_start = -1"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace loom::ops
