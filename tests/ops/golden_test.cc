// PyTorch golden tests of the CPU ops: every op family against the float64 PyTorch results in
// tests/fixtures/ops (tools/gen_op_fixtures.py), to kGoldenRtol = 1e-5 relative with an
// absolute floor of kGoldenAtol = 1e-6 (tests/ops/fixture.h says why). The checks themselves
// live in golden_cases.h; this file also tests the fixture reader.
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/ops/fixture.h"
#include "tests/ops/golden_cases.h"

namespace loom::testing {
namespace {

Device* Cpu() { return CpuDevice(); }

TEST(GoldenLinear, WithBias) { CheckLinear("linear", Cpu()); }
TEST(GoldenLinear, NoBias) { CheckLinear("linear_nobias", Cpu()); }
TEST(GoldenLinear, FusedGelu) { CheckLinear("linear_gelu", Cpu()); }
TEST(GoldenGemm, NN) { CheckGemm("gemm_nn", Cpu()); }
TEST(GoldenGemm, TN) { CheckGemm("gemm_tn", Cpu()); }
TEST(GoldenGemm, NT) { CheckGemm("gemm_nt", Cpu()); }
TEST(GoldenGemm, TT) { CheckGemm("gemm_tt", Cpu()); }
TEST(GoldenActivation, Gelu) { CheckGelu(Cpu()); }
TEST(GoldenActivation, SwiGLU) { CheckSwiGLU(Cpu()); }
TEST(GoldenActivation, Add) { CheckAdd(Cpu()); }
TEST(GoldenEmbedding, TokenAndPosition) { CheckEmbedding("embedding", Cpu()); }
TEST(GoldenEmbedding, VocabSliceNoPositions) { CheckEmbedding("embedding_vocab_slice", Cpu()); }
TEST(GoldenNorm, LayerNorm) { CheckLayerNorm(Cpu()); }
TEST(GoldenNorm, RMSNorm) { CheckRMSNorm(Cpu()); }
TEST(GoldenNorm, FusedResidualLayerNorm) { CheckFusedResidualLayerNorm(Cpu()); }
TEST(GoldenNorm, FusedResidualRMSNorm) { CheckFusedResidualRMSNorm(Cpu()); }
TEST(GoldenRope, RotateHalfWithOffset) { CheckRope(Cpu()); }
TEST(GoldenAttention, MultiHead) { CheckAttention("attention_mha", Cpu()); }
TEST(GoldenAttention, GroupedQuery) { CheckAttention("attention_gqa", Cpu()); }
TEST(GoldenCrossEntropy, Full) { CheckCrossEntropy("cross_entropy", Cpu()); }
TEST(GoldenCrossEntropy, PaddedVocab) { CheckCrossEntropy("cross_entropy_padded", Cpu()); }
TEST(GoldenCrossEntropy, VocabParallel) { CheckVocabParallelCrossEntropy(Cpu()); }
TEST(GoldenOptimizer, AdamW) { CheckAdamW(Cpu()); }
TEST(GoldenOptimizer, SumOfSquares) { CheckSumOfSquares(Cpu()); }

// The fixture folder holds exactly the fixtures the checks read.
TEST(GoldenFixtures, EveryFixtureIsChecked) {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(FixtureDir())) {
    if (entry.path().extension() == ".bin") on_disk.insert(entry.path().stem().string());
  }
  const auto& names = GoldenFixtureNames();
  std::set<std::string> checked(names.begin(), names.end());
  EXPECT_EQ(on_disk, checked) << "fixtures in " << FixtureDir()
                              << " and GoldenFixtureNames() differ";
}

// ---- the reader ---------------------------------------------------------------------------

// Builds a fixture file byte by byte.
class Bytes {
 public:
  Bytes& Raw(const void* p, size_t n) {
    data_.append(static_cast<const char*>(p), n);
    return *this;
  }
  Bytes& U32(uint32_t v) { return Raw(&v, 4); }
  Bytes& I64(int64_t v) { return Raw(&v, 8); }
  Bytes& F32(float v) { return Raw(&v, 4); }
  std::vector<char> vec() const { return std::vector<char>(data_.begin(), data_.end()); }

 private:
  std::string data_;
};

// One f32 [2, 3] tensor "w" = 0, 0.5, ..., 2.5 and one i32 scalar "k" = -7.
std::vector<char> TinyFile() {
  Bytes b;
  b.Raw(kFixtureMagic, 8).U32(2);
  b.U32(1).Raw("w", 1).U32(0).U32(2).I64(2).I64(3);
  for (int i = 0; i < 6; ++i) b.F32(0.5f * i);
  b.U32(1).Raw("k", 1).U32(1).U32(0).U32(static_cast<uint32_t>(-7));
  return b.vec();
}

TEST(FixtureReader, ParsesTensorsAndScalars) {
  auto fx = Fixture::Parse(TinyFile(), "tiny");
  ASSERT_TRUE(fx.ok()) << fx.status();
  auto w = fx->Get("w");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->shape(), (Shape{2, 3}));
  EXPECT_EQ(w->data_as<float>()[5], 2.5f);
  auto k = fx->Int("k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(*k, -7);
  EXPECT_FALSE(fx->Float("k").ok());  // wrong dtype
  EXPECT_FALSE(fx->Int("w").ok());    // not a scalar
  auto missing = fx->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'nope'"), absl::string_view::npos);
}

TEST(FixtureReader, RejectsMalformedFiles) {
  std::vector<char> bad_magic = TinyFile();
  bad_magic[0] = 'X';
  EXPECT_NE(Fixture::Parse(bad_magic, "f").status().message().find("magic"),
            absl::string_view::npos);
  for (size_t cut : {4u, 12u, 20u, 40u}) {
    std::vector<char> truncated = TinyFile();
    truncated.resize(truncated.size() - cut);
    auto st = Fixture::Parse(truncated, "f").status();
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << cut;
    EXPECT_NE(st.message().find("truncated"), absl::string_view::npos) << st;
  }
  std::vector<char> trailing = TinyFile();
  trailing.push_back(0);
  EXPECT_NE(Fixture::Parse(trailing, "f").status().message().find("trailing"),
            absl::string_view::npos);
  std::vector<char> bad_dtype = TinyFile();
  bad_dtype[8 + 4 + 4 + 1] = 9;  // dtype code of "w"
  EXPECT_NE(Fixture::Parse(bad_dtype, "f").status().message().find("dtype code 9"),
            absl::string_view::npos);
  EXPECT_EQ(Fixture::LoadFile("/nonexistent/x.bin").status().code(), absl::StatusCode::kNotFound);
}

TEST(FixtureReader, ComparisonReportsMismatches) {
  auto fx = Fixture::Parse(TinyFile(), "tiny");
  ASSERT_TRUE(fx.ok());
  Tensor same = Tensor::FromVector({0, 0.5f, 1, 1.5f, 2, 2.5f}, Shape{2, 3});
  EXPECT_TRUE(MatchesFixture(same, *fx, "w"));
  Tensor off = Tensor::FromVector({0, 0.5f, 1, 1.5f, 2, 2.5f + 1e-4f}, Shape{2, 3});
  auto r = MatchesFixture(off, *fx, "w");
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("[5]"), std::string::npos) << r.message();
  Tensor shape = Tensor::FromVector({0, 0.5f, 1, 1.5f, 2, 2.5f}, Shape{3, 2});
  EXPECT_FALSE(MatchesFixture(shape, *fx, "w"));
  Tensor nan = Tensor::FromVector({NAN, 0.5f, 1, 1.5f, 2, 2.5f}, Shape{2, 3});
  EXPECT_FALSE(MatchesFixture(nan, *fx, "w"));
}

}  // namespace
}  // namespace loom::testing
