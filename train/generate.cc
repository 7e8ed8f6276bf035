#include "train/generate.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "data/sft_prepare.h"
#include "data/text_stream.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "model/generator.h"
#include "model/gpt.h"
#include "model/hf_format.h"
#include "model/model_file.h"
#include "ops/op_stream.h"
#include "parallel/param_table.h"
#include "parallel/process_groups.h"
#include "parallel/rank_grid.h"
#include "runtime/cuda_device_choice.h"
#include "runtime/status.h"
#include "runtime/test_device.h"
#include "runtime/timer.h"
#include "train/model_export.h"

namespace loom {
namespace {

absl::StatusOr<Device*> GenerationDevice(const std::string& backend, const World& world) {
  if (backend == "cpu") return CpuDevice();
  if (backend == "test") {
    return TestDeviceCount() == 1 ? TestDevice(0) : TestDevice(world.local_rank());
  }
  if (backend == "cuda") {
    const LocalPlacement where{world.local_rank(), world.local_size()};
    LOOM_ASSIGN_OR_RETURN(int index,
                          ChooseCudaDevice(where, CudaDeviceCount(), CudaUnavailableReason()));
    return CudaDevice(index);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--backend must be cpu, cuda or test, got \"", backend, "\""));
}

// The tokenizer a checkpoint's training used: the one beside the job's training shards (what
// the trainer checked against model.vocab), else the job's data.sft.tokenizer; "" when `from`
// is no checkpoint or neither is found (the data may have moved).
std::string CheckpointTokenizer(const std::string& from) {
  auto step = ResolveCheckpoint(from);
  if (!step.ok()) return "";
  auto reader = CheckpointReader::Open(*step);
  if (!reader.ok()) return "";
  const JobConfig& job = (*reader)->manifest().job();
  std::error_code ec;
  if (!job.data().train().empty()) {
    auto shards = ExpandShardGlobs({job.data().train()});
    if (shards.ok() && !shards->empty()) {
      const std::filesystem::path dir = std::filesystem::path((*shards)[0]).parent_path();
      for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
        if (std::filesystem::exists(dir / name, ec)) return (dir / name).string();
      }
    }
  }
  const std::string& sft = job.data().sft().tokenizer();
  if (!sft.empty() && std::filesystem::exists(sft, ec)) return sft;
  return "";
}

// The tokenizer the options name (see GenerateOptions::tokenizer); *from_file says which file.
absl::StatusOr<std::unique_ptr<Tokenizer>> GenerationTokenizer(const GenerateOptions& o,
                                                               const GptConfig& config,
                                                               std::string* from_file) {
  std::unique_ptr<Tokenizer> tok;
  if (!o.tokenizer.empty()) {
    auto t = LoadTokenizer(o.tokenizer);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat("--tokenizer: ", t.status().message()));
    }
    tok = std::move(*t);
    *from_file = o.tokenizer;
  } else if (IsHfModelDir(o.from)) {
    // A Hugging Face directory's own tokenizer; tokenizer.model when its tokenizer.json is of a
    // kind loom does not read (LLaMA-2 repositories ship both).
    std::string why;
    for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
      const std::string path = (std::filesystem::path(o.from) / name).string();
      std::error_code ec;
      if (!std::filesystem::exists(path, ec)) continue;
      auto t = LoadTokenizer(path);
      if (t.ok()) {
        tok = std::move(*t);
        *from_file = path;
        break;
      }
      absl::StrAppend(&why, why.empty() ? "" : "; ", t.status().message());
    }
    if (!tok && !why.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--from ", o.from, ": its tokenizer does not load (", why, "); give --tokenizer"));
    }
  }
  std::error_code dir_ec;
  if (!tok && std::filesystem::is_directory(o.from, dir_ec) && !IsHfModelDir(o.from)) {
    if (const std::string path = CheckpointTokenizer(o.from); !path.empty()) {
      auto t = LoadTokenizer(path);
      if (!t.ok()) {
        return absl::Status(
            t.status().code(),
            absl::StrCat("--from ", o.from, ": the tokenizer of its training data (",
                         t.status().message(), "); give --tokenizer"));
      }
      tok = std::move(*t);
      *from_file = path;
    }
  }
  if (!tok) {
    if (config.vocab != ByteTokenizer::kVocabSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--from ", o.from, ": the model's vocabulary has ", config.vocab,
          " ids, the byte tokenizer ", ByteTokenizer::kVocabSize,
          ": give the model's tokenizer with --tokenizer (a tokenizer.json or .model)"));
    }
    *from_file = "byte";
    return std::unique_ptr<Tokenizer>(std::make_unique<ByteTokenizer>());
  }
  // Every id the tokenizer gives needs an embedding row; a model with more rows than the
  // tokenizer has ids (padding, reserved ids) is fine.
  if (tok->vocab_size() > config.vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer ", *from_file, " (", std::string(tok->type()), ") has ",
                     tok->vocab_size(), " ids but the model (--from ", o.from,
                     ") has a vocabulary of ", config.vocab, ": not the model's tokenizer"));
  }
  return tok;
}

}  // namespace

absl::StatusOr<GenerateResult> Generate(
    const GenerateOptions& o, World* world,
    const std::function<void(int32_t, const std::string&)>& on_token) {
  if (o.from.empty()) return absl::InvalidArgumentError("--from: a checkpoint or model file");
  if (o.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-new-tokens must be >= 0, got ", o.max_new_tokens));
  }
  if (o.sampling.top_p <= 0 || o.sampling.top_p > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--top-p must be in (0, 1], got ", o.sampling.top_p));
  }
  auto stored = ReadModelConfigAt(o.from);
  if (!stored.ok()) {
    return absl::Status(stored.status().code(),
                        absl::StrCat("--from ", o.from, ": ", stored.status().message()));
  }
  GptConfig config = *stored;
  // The vocabulary is padded for this tensor group (padding rows zero); the stored padding
  // (none in a Hugging Face model) need not divide by it.
  const int tp = world->size();
  config.padded_vocab = (config.padded_vocab + tp - 1) / tp * tp;
  GenerateResult result;
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                        GenerationTokenizer(o, config, &result.tokenizer));
  const Tokenizer& tok = *tokenizer;
  std::string text = o.prompt;
  // A chat template's end of turn: the assistant suffix without its trailing whitespace
  // ("<|im_end|>" for chatml; nothing for qa and plain, whose suffix is a newline). A released
  // chat model may end its turn with it and never emit the end-of-text token, so generation
  // stops there too (as transformers' stop strings do); the marker is part of the output.
  std::string end_of_turn;
  if (!o.template_name.empty()) {
    LOOM_ASSIGN_OR_RETURN(data::SftTemplate tmpl, LoadSftTemplate(o.template_name));
    text = RenderSftPrompt(o.prompt, tmpl);
    end_of_turn = std::string(absl::StripTrailingAsciiWhitespace(tmpl.assistant_suffix()));
  }
  // As `data prepare` and `data sft` begin a document (and transformers' tokenizer(prompt)).
  if (tok.bos() >= 0) result.prompt_ids.push_back(tok.bos());
  tok.Encode(text, &result.prompt_ids);
  if (result.prompt_ids.empty()) result.prompt_ids.push_back(tok.eot());  // unconditional
  const int64_t total = static_cast<int64_t>(result.prompt_ids.size()) + o.max_new_tokens;
  if (total > config.max_seq) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt (", result.prompt_ids.size(), " tokens) and --max-new-tokens ",
                     o.max_new_tokens, " exceed the model's max_seq of ", config.max_seq));
  }

  // The tensor group is the world; each rank builds its share of the model.
  if (config.heads % tp != 0 || config.kv_heads % tp != 0 || config.ffn_hidden % tp != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generation on ", tp, " ranks (tensor parallel): heads ", config.heads, ", kv_heads ",
        config.kv_heads, " and ffn_hidden ", config.ffn_hidden, " must all divide by ", tp));
  }
  LOOM_ASSIGN_OR_RETURN(Device * device, GenerationDevice(o.backend, *world));
  std::unique_ptr<ops::OpStreamScope> op_stream;
  if (!device->host_memory()) {
    LOOM_ASSIGN_OR_RETURN(op_stream, ops::OpStreamScope::Create(device));
  }
  LOOM_ASSIGN_OR_RETURN(RankGrid grid, RankGrid::Create(tp, tp, 1, 1));
  LOOM_ASSIGN_OR_RETURN(
      std::unique_ptr<ProcessGroups> groups,
      ProcessGroups::Create(*world, grid, !device->host_memory() && tp > 1 ? device : nullptr));
  TensorParallelism tpar;
  tpar.tp = &groups->tp();
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<GptModel> model,
                        GptModel::Create(config, device, DType::kF32, tpar));
  // Each rank reads only its own slices (train/model_export.h).
  auto local = ReadWeightSlicesAt(o.from, config, model->layout());
  if (!local.ok()) {
    return absl::Status(local.status().code(),
                        absl::StrCat("--from ", o.from, ": ", local.status().message()));
  }
  LOOM_RETURN_IF_ERROR(model->params().CopyFromFloats(*local));
  Communicator* tp_comm = tp > 1 ? &groups->tp() : nullptr;

  std::unique_ptr<Generator> gen;
  if (!o.full_recompute) {
    LOOM_ASSIGN_OR_RETURN(gen, Generator::Create(model.get(), tp_comm, total));
  }
  std::vector<int32_t> seq = result.prompt_ids;
  TextStream stream(tok, result.prompt_ids);
  // The logits the next token is picked from: row `row` of `logits`.
  auto next_logits =
      [&](absl::Span<const int32_t> fresh) -> absl::StatusOr<std::pair<Tensor, int64_t>> {
    if (gen) {
      LOOM_ASSIGN_OR_RETURN(Tensor l, gen->Append(fresh));
      return std::make_pair(l, int64_t{0});
    }
    const int64_t n = static_cast<int64_t>(seq.size());
    Tensor in = Tensor::View(seq.data(), Shape{1, n}, DType::kI32, CpuDevice());
    LOOM_ASSIGN_OR_RETURN(Tensor l, model->Forward(in));
    return std::make_pair(l, n - 1);
  };
  Timer timer;
  LOOM_ASSIGN_OR_RETURN(auto next, next_logits(seq));
  timer.Reset();
  for (int i = 0; i < o.max_new_tokens; ++i) {
    LOOM_ASSIGN_OR_RETURN(const int32_t id,
                          SampleToken(next.first, next.second, config.vocab, config.padded_vocab,
                                      tp_comm, o.sampling, o.seed, static_cast<uint64_t>(i)));
    // The turn ends with this token when the text it completes ends with the end-of-turn
    // marker (decoded text, so a marker split over several tokens is found too).
    std::string piece;
    bool ends_turn = false;
    if (!(o.stop_at_eot && id == tok.eot())) {
      piece = stream.Push(id);
      ends_turn =
          o.stop_at_eot && !end_of_turn.empty() && absl::EndsWith(result.text + piece, end_of_turn);
    }
    if (i + 1 == o.max_new_tokens || (o.stop_at_eot && id == tok.eot()) || ends_turn) {
      LOOM_ASSIGN_OR_RETURN(
          Tensor row,
          next.first.Slice(next.second, next.second + 1).Reshape(Shape{next.first.dim(1)}));
      LOOM_ASSIGN_OR_RETURN(result.last_logits, row.ToFloatVector());
      result.last_logits.resize(std::min<size_t>(result.last_logits.size(), config.vocab));
    }
    if (o.stop_at_eot && id == tok.eot()) break;
    result.new_ids.push_back(id);
    seq.push_back(id);
    result.text += piece;
    if (on_token) on_token(id, piece);
    if (ends_turn) break;
    if (i + 1 < o.max_new_tokens) {
      LOOM_ASSIGN_OR_RETURN(next, next_logits(absl::MakeConstSpan(&seq.back(), 1)));
    }
  }
  result.seconds = timer.Seconds();
  if (std::string rest = stream.Finish(); !rest.empty()) {
    result.text += rest;
    if (on_token) on_token(-1, rest);
  }
  return result;
}

}  // namespace loom
