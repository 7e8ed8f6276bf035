// Fuzz target: model weight files (model/model_file.h), llm.c GPT-2 (fp32 and bf16) and loom
// model files, as `model.init_from` and `loom generate --model` read them. Any bytes either
// load, with weights as large as the file holds, or are refused with a Status naming the file.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/gpt_params.h"
#include "model/model_file.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/tiny_models.h"

namespace {

loom::GptConfig Gpt2() { return loom::fuzz::TinyGpt2(16); }
loom::GptConfig Llama() { return loom::fuzz::TinyLlama(16); }
std::vector<float> Weights(const loom::GptConfig& c) { return loom::fuzz::TinyWeights(c); }

}  // namespace

namespace loom::fuzz {

absl::Status WriteSeeds(const std::string& dir) {
  const GptConfig gpt2 = Gpt2(), llama = Llama();
  if (absl::Status s = WriteLlmcModelFile(dir + "/llmc_fp32.bin", gpt2, Weights(gpt2)); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteLlmcModelFile(dir + "/llmc_bf16.bin", gpt2, Weights(gpt2), true);
      !s.ok()) {
    return s;
  }
  return WriteLoomModelFile(dir + "/loom_llama.bin", llama, Weights(llama));
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = loom::fuzz::WriteScratch("model.bin", data, size);
  auto w = loom::ReadModelFile(path);
  if (!w.ok()) return 0;
  // What a caller does next: compare with the job's model, and use every weight.
  (void)loom::CheckSameShape(Gpt2(), w->config, path);
  // A loaded file holds exactly its model's parameters (the promise of LoadedWeights).
  if (static_cast<int64_t>(w->params.size()) != loom::GptParamLayout(w->config).total()) {
    std::abort();
  }
  float sum = 0;
  for (float x : w->params) sum += x;
  volatile float sink = sum;
  (void)sink;
  return 0;
}
