// Fuzz target: Hugging Face model directories (model/hf_format.h, model/hf_safetensors.h), as
// `model.init_from: DIR`, `export --from DIR` and `loom generate --from DIR` read them. An input
// is one file of such a directory: its first byte says which (even: config.json, odd:
// model.safetensors), the rest is that file's bytes; the other file is a valid one of a tiny
// model that loom wrote (GPT-2 f32 beside a fuzzed config.json, LLaMA bf16's config beside a
// fuzzed safetensors when the byte's bit 1 is set, else GPT-2's). Any input either loads, with
// exactly its model's parameters, or is refused with a Status naming the file: never a crash, a
// hang or an allocation the file's sizes do not justify.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "model/gpt_params.h"
#include "model/hf_format.h"
#include "model/model_file.h"
#include "runtime/files.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/tiny_models.h"

namespace {

loom::GptConfig Gpt2() { return loom::fuzz::TinyGpt2(11); }
loom::GptConfig Llama() { return loom::fuzz::TinyLlama(11); }
std::vector<float> Weights(const loom::GptConfig& c) { return loom::fuzz::TinyWeights(c); }

// Writes the tiny model `c` as an HF directory under `dir` and returns {config.json, tensors}.
std::pair<std::string, std::string> TinyDir(const std::string& dir, const loom::GptConfig& c,
                                            loom::DType dtype) {
  loom::HfWriteOptions o;
  o.dtype = dtype;
  if (!loom::WriteHfModelDir(dir, c, Weights(c), o).ok()) std::abort();
  auto config = loom::ReadFile(dir + "/config.json");
  auto tensors = loom::ReadFile(dir + "/model.safetensors");
  if (!config.ok() || !tensors.ok()) std::abort();
  return {*config, *tensors};
}

// The valid files, written once per process.
struct Valid {
  std::pair<std::string, std::string> gpt2, llama;
};
const Valid& ValidFiles() {
  static const Valid v = [] {
    const std::string root = loom::fuzz::ScratchDir();
    return Valid{TinyDir(root + "/valid_gpt2", Gpt2(), loom::DType::kF32),
                 TinyDir(root + "/valid_llama", Llama(), loom::DType::kBF16)};
  }();
  return v;
}

}  // namespace

namespace loom::fuzz {

absl::Status WriteSeeds(const std::string& dir) {
  const Valid& v = ValidFiles();
  const std::pair<const char*, std::string> seeds[] = {
      {"/gpt2_config", std::string(1, '\0') + v.gpt2.first},
      {"/gpt2_tensors", std::string(1, '\1') + v.gpt2.second},
      {"/llama_config", std::string(1, '\2') + v.llama.first},
      {"/llama_tensors", std::string(1, '\3') + v.llama.second},
  };
  for (const auto& [name, bytes] : seeds) {
    if (absl::Status s = AtomicWriteFile(dir + name, bytes); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Valid& v = ValidFiles();
  const auto& other = (data[0] & 2) ? v.llama : v.gpt2;
  const bool fuzz_tensors = (data[0] & 1) != 0;
  const std::string fuzzed(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string dir = loom::fuzz::ScratchDir() + "/hf";
  std::filesystem::create_directories(dir);
  if (!loom::AtomicWriteFile(dir + "/config.json", fuzz_tensors ? other.first : fuzzed).ok() ||
      !loom::AtomicWriteFile(dir + "/model.safetensors", fuzz_tensors ? fuzzed : other.second)
           .ok()) {
    std::abort();
  }
  auto w = loom::ReadModelFile(dir);
  if (!w.ok()) return 0;
  // A loaded directory holds exactly its model's parameters (the promise of LoadedWeights).
  if (static_cast<int64_t>(w->params.size()) != loom::GptParamLayout(w->config).total()) {
    std::abort();
  }
  float sum = 0;
  for (float x : w->params) sum += x;
  volatile float sink = sum;
  (void)sink;
  return 0;
}
