// Per-token position ids in the position embedding and RoPE (CPU), as packed fine-tuning samples
// use them (positions restart at each document) and context-parallel chunks (global positions):
//   - positions 0..T-1 of every row give the plain op bit for bit (the null path is unchanged);
//   - the embedding adds wpe[positions[b, t]] and its backward scatters dout to those rows, in
//     token order exactly, and matches finite differences in double;
//   - RoPE rotates each token by its own position: equal to the op on that token alone at
//     pos_offset = its position, forward and backward (backward undoes forward);
//   - a position outside the table (embedding) or negative (RoPE) is refused, naming it.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/embedding.h"
#include "ops/cpu/rope.h"
#include "ops/embedding.h"
#include "ops/rope.h"
#include "tests/ops/gradcheck.h"

namespace loom::ops {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::Dot;
using ::loom::testing::GradientMatches;
using ::loom::testing::RandomDoubles;
using ::loom::testing::RandomFloats;

std::vector<float> Values(const Tensor& t) { return *t.ToFloatVector(); }

constexpr int64_t kB = 2, kT = 7, kC = 5, kV = 9, kMaxT = 12;
// Two rows of packed documents: row 0 restarts at 3 and 5, row 1 at 4; and one row at global
// positions past T (a context-parallel rank's second chunk).
const std::vector<int32_t> kPacked = {0, 1, 2, 0, 1, 0, 1, 0, 1, 2, 3, 0, 1, 2};
const std::vector<int32_t> kChunks = {0, 1, 2, 9, 10, 11, 3, 0, 1, 2, 9, 10, 11, 3};

TEST(PositionIdsEmbeddingTest, ZeroToTIsThePlainOpBitForBit) {
  std::vector<int32_t> tok = {1, 3, 8, 3, 0, 2, 2, 5, 0, 4, 7, 7, 1, 6};
  std::vector<int32_t> iota;
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) iota.push_back(static_cast<int32_t>(t));
  }
  Tensor tokens = Tensor::FromVectorI32(tok, {kB, kT});
  Tensor pos = Tensor::FromVectorI32(iota, {kB, kT});
  Tensor wte = Tensor::FromVector(RandomFloats(kV * kC, 1), {kV, kC});
  Tensor wpe = Tensor::FromVector(RandomFloats(kMaxT * kC, 2), {kMaxT, kC});
  Tensor a = *Tensor::Zeros({kB, kT, kC}, DType::kF32, CpuDevice());
  Tensor b = *Tensor::Zeros({kB, kT, kC}, DType::kF32, CpuDevice());
  ASSERT_TRUE(EmbeddingForward(tokens, wte, &wpe, a).ok());
  ASSERT_TRUE(EmbeddingForward(tokens, wte, &wpe, b, 0, &pos).ok());
  EXPECT_EQ(Values(a), Values(b));
  Tensor dout = Tensor::FromVector(RandomFloats(kB * kT * kC, 3), {kB, kT, kC});
  Tensor dwte[2] = {*Tensor::Zeros({kV, kC}, DType::kF32, CpuDevice()),
                    *Tensor::Zeros({kV, kC}, DType::kF32, CpuDevice())};
  Tensor dwpe[2] = {*Tensor::Zeros({kMaxT, kC}, DType::kF32, CpuDevice()),
                    *Tensor::Zeros({kMaxT, kC}, DType::kF32, CpuDevice())};
  ASSERT_TRUE(EmbeddingBackward(tokens, dout, dwte[0], &dwpe[0]).ok());
  ASSERT_TRUE(EmbeddingBackward(tokens, dout, dwte[1], &dwpe[1], 0, &pos).ok());
  EXPECT_EQ(Values(dwte[0]), Values(dwte[1]));
  EXPECT_EQ(Values(dwpe[0]), Values(dwpe[1]));
}

TEST(PositionIdsEmbeddingTest, AddsAndScattersTheRowsOfEachTokensPosition) {
  std::vector<int32_t> tok = {1, 3, 8, 3, 0, 2, 2, 5, 0, 4, 7, 7, 1, 6};
  for (const std::vector<int32_t>* ids : {&kPacked, &kChunks}) {
    const auto wte_v = RandomFloats(kV * kC, 4), wpe_v = RandomFloats(kMaxT * kC, 5);
    const auto dout_v = RandomFloats(kB * kT * kC, 6), dwpe0 = RandomFloats(kMaxT * kC, 7);
    Tensor tokens = Tensor::FromVectorI32(tok, {kB, kT});
    Tensor pos = Tensor::FromVectorI32(*ids, {kB, kT});
    Tensor wte = Tensor::FromVector(wte_v, {kV, kC});
    Tensor wpe = Tensor::FromVector(wpe_v, {kMaxT, kC});
    Tensor out = *Tensor::Zeros({kB, kT, kC}, DType::kF32, CpuDevice());
    ASSERT_TRUE(EmbeddingForward(tokens, wte, &wpe, out, 0, &pos).ok());
    std::vector<float> want(kB * kT * kC), want_dwpe = dwpe0;
    for (int64_t bt = 0; bt < kB * kT; ++bt) {
      for (int64_t c = 0; c < kC; ++c) {
        want[bt * kC + c] = wte_v[tok[bt] * kC + c] + wpe_v[(*ids)[bt] * kC + c];
        want_dwpe[(*ids)[bt] * kC + c] += dout_v[bt * kC + c];  // token order
      }
    }
    EXPECT_EQ(Values(out), want);
    Tensor dout = Tensor::FromVector(dout_v, {kB, kT, kC});
    Tensor dwte = *Tensor::Zeros({kV, kC}, DType::kF32, CpuDevice());
    Tensor dwpe = Tensor::FromVector(dwpe0, {kMaxT, kC});
    ASSERT_TRUE(EmbeddingBackward(tokens, dout, dwte, &dwpe, 0, &pos).ok());
    EXPECT_EQ(Values(dwpe), want_dwpe);
  }
}

TEST(PositionIdsEmbeddingTest, BackwardMatchesFiniteDifferences) {
  std::vector<int32_t> tok = {1, 3, 8, 3, 0, 2, 2, 5, 0, 4, 7, 7, 1, 6};
  std::vector<double> wte = RandomDoubles(kV * kC, 8), wpe = RandomDoubles(kMaxT * kC, 9);
  const std::vector<double> probe = RandomDoubles(kB * kT * kC, 10);
  auto loss = [&]() {
    std::vector<double> out(kB * kT * kC);
    cpu::EmbeddingForward<double>(tok.data(), wte.data(), wpe.data(), out.data(), kB, kT, kC, kV, 0,
                                  kPacked.data());
    return Dot(out, probe);
  };
  std::vector<double> dwte(kV * kC, 0.0), dwpe(kMaxT * kC, 0.0);
  cpu::EmbeddingBackward<double>(tok.data(), probe.data(), dwte.data(), dwpe.data(), kB, kT, kC, kV,
                                 0, kPacked.data());
  EXPECT_TRUE(GradientMatches(loss, &wpe, dwpe));
  EXPECT_TRUE(GradientMatches(loss, &wte, dwte));
}

TEST(PositionIdsEmbeddingTest, BadPositionsAreNamed) {
  Tensor tokens = Tensor::FromVectorI32(std::vector<int32_t>(kB * kT, 0), {kB, kT});
  Tensor wte = *Tensor::Zeros({kV, kC}, DType::kF32, CpuDevice());
  Tensor wpe = *Tensor::Zeros({kMaxT, kC}, DType::kF32, CpuDevice());
  Tensor out = *Tensor::Zeros({kB, kT, kC}, DType::kF32, CpuDevice());
  std::vector<int32_t> ids = kPacked;
  ids[9] = kMaxT;
  Tensor far = Tensor::FromVectorI32(ids, {kB, kT});
  absl::Status s = EmbeddingForward(tokens, wte, &wpe, out, 0, &far);
  EXPECT_NE(s.message().find("positions[9] = 12 is outside [0, 12), the rows of wpe"),
            absl::string_view::npos)
      << s;
  s = EmbeddingBackward(tokens, out, wte, &wpe, 0, &far);
  EXPECT_NE(s.message().find("positions[9] = 12 is outside [0, 12), the rows of dwpe"),
            absl::string_view::npos)
      << s;
  Tensor wrong = Tensor::FromVectorI32(std::vector<int32_t>(kT, 0), {1, kT});
  s = EmbeddingForward(tokens, wte, &wpe, out, 0, &wrong);
  EXPECT_NE(s.message().find("positions has shape [1, 7]; expected the tokens' [2, 7]"),
            absl::string_view::npos)
      << s;
}

constexpr int kNh = 4, kNkv = 2, kHd = 8;
constexpr int64_t kWidth = (kNh + 2 * kNkv) * kHd;

// RoPE on token (b, t) alone, at pos_offset = its position id.
std::vector<float> RopeTokenByToken(const std::vector<float>& x, const std::vector<int32_t>& ids,
                                    bool inverse) {
  std::vector<float> out = x;
  for (int64_t bt = 0; bt < kB * kT; ++bt) {
    Tensor one =
        Tensor::View(out.data() + bt * kWidth, Shape{1, 1, kWidth}, DType::kF32, CpuDevice());
    const absl::Status s = inverse ? RopeBackward(one, kNh, kNkv, 10000.0f, ids[bt])
                                   : RopeForward(one, kNh, kNkv, 10000.0f, ids[bt]);
    EXPECT_TRUE(s.ok()) << s;
  }
  return out;
}

TEST(PositionIdsRopeTest, EachTokenTurnsByItsOwnPosition) {
  const auto x = RandomFloats(kB * kT * kWidth, 11);
  for (const std::vector<int32_t>* ids : {&kPacked, &kChunks}) {
    Tensor pos = Tensor::FromVectorI32(*ids, {kB, kT});
    for (bool inverse : {false, true}) {
      Tensor qkv = Tensor::FromVector(x, {kB, kT, kWidth});
      ASSERT_TRUE((inverse ? RopeBackward(qkv, kNh, kNkv, 10000.0f, 0, &pos)
                           : RopeForward(qkv, kNh, kNkv, 10000.0f, 0, &pos))
                      .ok());
      EXPECT_EQ(Values(qkv), RopeTokenByToken(x, *ids, inverse)) << "inverse " << inverse;
    }
    // The backward (transposed rotation) undoes the forward.
    Tensor qkv = Tensor::FromVector(x, {kB, kT, kWidth});
    ASSERT_TRUE(RopeForward(qkv, kNh, kNkv, 10000.0f, 0, &pos).ok());
    ASSERT_TRUE(RopeBackward(qkv, kNh, kNkv, 10000.0f, 0, &pos).ok());
    EXPECT_TRUE(AllClose(Values(qkv), std::vector<double>(x.begin(), x.end()), 1e-6, 1e-6));
  }
  // Positions spread wider than there are tokens (the kernel's per-token table).
  std::vector<int32_t> sparse(kB * kT);
  for (int64_t i = 0; i < kB * kT; ++i) sparse[i] = static_cast<int32_t>(1000 * i + 3);
  Tensor pos = Tensor::FromVectorI32(sparse, {kB, kT});
  Tensor qkv = Tensor::FromVector(x, {kB, kT, kWidth});
  ASSERT_TRUE(RopeForward(qkv, kNh, kNkv, 10000.0f, 0, &pos).ok());
  EXPECT_EQ(Values(qkv), RopeTokenByToken(x, sparse, false));
}

TEST(PositionIdsRopeTest, ZeroToTIsThePlainOpBitForBit) {
  const auto x = RandomFloats(kB * kT * kWidth, 12);
  std::vector<int32_t> iota;
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) iota.push_back(static_cast<int32_t>(t + 5));
  }
  Tensor pos = Tensor::FromVectorI32(iota, {kB, kT});
  Tensor a = Tensor::FromVector(x, {kB, kT, kWidth});
  Tensor b = Tensor::FromVector(x, {kB, kT, kWidth});
  ASSERT_TRUE(RopeForward(a, kNh, kNkv, 10000.0f, 5).ok());
  ASSERT_TRUE(RopeForward(b, kNh, kNkv, 10000.0f, 0, &pos).ok());
  EXPECT_EQ(Values(a), Values(b));
}

TEST(PositionIdsRopeTest, NegativeOrMisshapenPositionsAreNamed) {
  Tensor qkv = Tensor::FromVector(RandomFloats(kB * kT * kWidth, 13), {kB, kT, kWidth});
  std::vector<int32_t> ids = kPacked;
  ids[4] = -1;
  Tensor neg = Tensor::FromVectorI32(ids, {kB, kT});
  absl::Status s = RopeForward(qkv, kNh, kNkv, 10000.0f, 0, &neg);
  EXPECT_NE(s.message().find("RopeForward: positions[4] = -1; expected >= 0"),
            absl::string_view::npos)
      << s;
  Tensor wrong = Tensor::FromVectorI32(std::vector<int32_t>(kT, 0), {1, kT});
  s = RopeBackward(qkv, kNh, kNkv, 10000.0f, 0, &wrong);
  EXPECT_NE(s.message().find("RopeBackward: positions: expected i32 [B, T] = [2, 7]"),
            absl::string_view::npos)
      << s;
}

}  // namespace
}  // namespace loom::ops
