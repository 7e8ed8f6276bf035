// ReadModelSlices for every layout, one process: for 4-layer GPT-2 (llm.c file) and LLaMA
// (Hugging Face directory, bf16) models, every tensor rank of tp 1, 2, 4 and every stage of pp
// 1, 2 with 1 or 2 virtual stages reads, with the job's padded vocabulary (another than the
// file's), exactly the boxes its parameter table holds, cut here independently from the whole
// model: real rows as stored, padding rows zero, a stage's tied copy equal to the embedding.
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/gpt_params.h"
#include "model/hf_format.h"
#include "model/model_file.h"
#include "runtime/dtype.h"
#include "tests/model/model_testing.h"

namespace loom {
namespace {

GptConfig Model(bool llama) {
  GptConfig c;
  c.family = llama ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = 4;
  c.heads = llama ? 8 : 4;
  c.kv_heads = 4;  // LLaMA: grouped-query attention, whole kv heads on each of 4 tensor ranks
  c.hidden = llama ? 32 : 16;
  c.ffn_hidden = llama ? 24 : 64;
  c.vocab = 37;
  c.padded_vocab = llama ? 37 : 48;  // the file's: HF unpadded, llm.c padded to 48
  c.max_seq = 8;
  c.tied_embeddings = !llama;
  return c;
}

// Distinct values everywhere but the padding rows (zero, as files hold them).
std::vector<float> Values(const GptConfig& c) {
  const ParamTable l = GptParamLayout(c);
  std::vector<float> p(l.total());
  for (size_t i = 0; i < p.size(); ++i) p[i] = 0.001f * static_cast<float>(i % 1009) - 0.5f;
  for (const ParamSpec& s : l.specs()) {
    if (s.zero_rows_from < 0) continue;
    const int64_t cols = s.global_shape.dims()[1];
    std::fill(p.begin() + s.offset + s.zero_rows_from * cols, p.begin() + s.offset + s.numel(),
              0.0f);
  }
  return p;
}

// The boxes of `table` cut from `whole` (laid out as GptParamLayout(job)).
std::vector<float> CutFromWhole(const ParamTable& table, const GptConfig& job,
                                const std::vector<float>& whole) {
  const ParamTable w = GptParamLayout(job);
  std::vector<float> out(table.total());
  for (const ParamSpec& s : table.specs()) {
    const ParamSpec* g = *w.Find(s.name);
    const std::vector<int64_t>& dims = g->global_shape.dims();
    const int64_t cols = dims.size() == 2 ? dims[1] : 1;
    int64_t at = s.offset;
    for (const TensorBox& b : s.pieces) {
      const int64_t rows = b.extent[0], bc = b.extent.size() == 2 ? b.extent[1] : 1;
      const int64_t c0 = b.offset.size() == 2 ? b.offset[1] : 0;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < bc; ++c) {
          out[at++] = whole[g->offset + (b.offset[0] + r) * cols + c0 + c];
        }
      }
    }
  }
  return out;
}

TEST(ModelSlicesTest, EveryRankOfEveryLayoutReadsItsBoxes) {
  const testing::ScopedTempDir tmp("model_slices");
  for (bool llama : {false, true}) {
    const GptConfig file = Model(llama);
    std::vector<float> values = Values(file);
    std::string path;
    if (llama) {
      path = tmp.path() + "/llama_hf";
      ASSERT_TRUE(WriteHfModelDir(path, file, values, {DType::kBF16, 4000}).ok());
      for (float& v : values) v = Bf16BitsToFloat(FloatToBf16Bits(v));  // what the file holds
    } else {
      path = tmp.path() + "/gpt2.llmc.bin";
      ASSERT_TRUE(WriteLlmcModelFile(path, file, values).ok());
    }
    auto reader = ModelFileReader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    for (int tp : {1, 2, 4}) {
      GptConfig job = file;
      job.padded_vocab = ((file.vocab + 8 * tp - 1) / (8 * tp)) * (8 * tp);  // 40, 48, 64
      // The whole model in the job's padding: the file's rows, then zeros.
      std::vector<float> whole(GptParamLayout(job).total(), 0.0f);
      {
        const ParamTable fl = GptParamLayout(file), jl = GptParamLayout(job);
        for (const ParamSpec& s : jl.specs()) {
          const ParamSpec* f = *fl.Find(s.name);
          const int64_t n = std::min(s.numel(), f->zero_rows_from >= 0
                                                    ? f->zero_rows_from * s.global_shape.dims()[1]
                                                    : f->numel());
          std::copy(values.begin() + f->offset, values.begin() + f->offset + n,
                    whole.begin() + s.offset);
        }
      }
      for (int pp : {1, 2}) {
        for (int v : {1, 2}) {
          const std::vector<int> chunk_layers(pp * v, file.layers / (pp * v));
          for (int stage = 0; stage < pp; ++stage) {
            for (int r = 0; r < tp; ++r) {
              const std::string what =
                  absl::StrCat(llama ? "LLaMA HF" : "GPT-2 llm.c", " tp ", tp, " rank ", r, " pp ",
                               pp, " v ", v, " stage ", stage);
              GptStage st = pp * v > 1 ? PipelineStageOf(pp, stage, chunk_layers) : GptStage{};
              auto table = GptParamTable(job, tp, r, st);
              ASSERT_TRUE(table.ok()) << what << ": " << table.status();
              auto got = ReadModelSlices(**reader, job, *table);
              ASSERT_TRUE(got.ok()) << what << ": " << got.status();
              const std::vector<float> want = CutFromWhole(*table, job, whole);
              ASSERT_EQ(got->size(), want.size()) << what;
              EXPECT_EQ(std::memcmp(got->data(), want.data(), want.size() * 4), 0) << what;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace loom
