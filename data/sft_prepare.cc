#include "data/sft_prepare.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "data/data_prepare.h"
#include "data/token_flags.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {

namespace fs = std::filesystem;

namespace {

data::SftTemplate Template(const char* sp, const char* ss, const char* up, const char* us,
                           const char* ap, const char* as) {
  data::SftTemplate t;
  t.set_system_prefix(sp);
  t.set_system_suffix(ss);
  t.set_user_prefix(up);
  t.set_user_suffix(us);
  t.set_assistant_prefix(ap);
  t.set_assistant_suffix(as);
  return t;
}

// Appends `text` encoded on its own (a segment), each token with `flags`.
void Append(const Tokenizer& tok, const std::string& text, uint8_t flags, RenderedExample* out) {
  if (text.empty()) return;
  tok.Encode(text, &out->tokens);
  out->flags.resize(out->tokens.size(), flags);
}

std::string SystemTurn(const data::SftTemplate& t, const std::string& content) {
  return t.system_prefix() + content + t.system_suffix();
}

// Refuses an out_dir that already holds this command's outputs, unless overwriting.
absl::Status CheckOutDir(const SftPrepareOptions& o) {
  if (o.overwrite) return absl::OkStatus();
  for (const char* name : {"train_000000.bin", "val_000000.bin"}) {
    std::error_code ec;
    if (fs::exists(fs::path(o.out_dir) / name, ec)) {
      return absl::AlreadyExistsError(
          absl::StrCat("data sft: ", (fs::path(o.out_dir) / name).string(),
                       " exists (an earlier run's shards); pass --overwrite to replace them"));
    }
  }
  return absl::OkStatus();
}

// One split being packed.
struct Packer {
  int64_t seq_len = 0;
  bool pack = true;
  int32_t pad_id = 0;  // the tokenizer's end-of-text
  std::vector<int32_t> tokens;
  std::vector<uint8_t> flags;
  int64_t pad = 0, truncated = 0;

  void PadTo(size_t n) {
    if (tokens.size() >= n) return;
    pad += static_cast<int64_t>(n - tokens.size());
    flags.push_back(kDocStartFlag);
    flags.resize(n, 0);
    tokens.resize(n, pad_id);
  }
  void Add(RenderedExample e) {
    if (seq_len > 0) {
      const size_t t = static_cast<size_t>(seq_len);
      if (e.tokens.size() > t) {
        e.tokens.resize(t);
        e.flags.resize(t);
        ++truncated;
      }
      const size_t used = tokens.size() % t;
      if (used != 0 && (!pack || used + e.tokens.size() > t)) PadTo(tokens.size() - used + t);
    }
    tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
    flags.insert(flags.end(), e.flags.begin(), e.flags.end());
  }
  // Whole samples: pad the last one and add the token its last target reads.
  void Finish() {
    if (seq_len <= 0 || tokens.empty()) return;
    const size_t t = static_cast<size_t>(seq_len);
    const size_t used = tokens.size() % t;
    if (used != 0) PadTo(tokens.size() - used + t);
    PadTo(tokens.size() + 1);
  }
};

}  // namespace

absl::StatusOr<data::SftTemplate> LoadSftTemplate(const std::string& name_or_path) {
  if (name_or_path == "qa") return Template("", "\n", "Q: ", "\n", "A: ", "\n");
  if (name_or_path == "chatml") {
    return Template("<|im_start|>system\n", "<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>\n",
                    "<|im_start|>assistant\n", "<|im_end|>\n");
  }
  if (name_or_path == "plain") return Template("", "\n", "", "\n", "", "\n");
  std::error_code ec;
  if (!fs::exists(name_or_path, ec)) {
    return absl::NotFoundError(
        absl::StrCat("SFT template \"", name_or_path,
                     "\" is neither a built-in template (qa, chatml, plain) nor an existing file"));
  }
  LOOM_ASSIGN_OR_RETURN(std::string text, ReadFile(name_or_path));
  data::SftTemplate t;
  if (!google::protobuf::TextFormat::ParseFromString(text, &t)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SFT template ", name_or_path,
        ": not a text-format SftTemplate (fields: system_prefix, system_suffix, user_prefix, "
        "user_suffix, assistant_prefix, assistant_suffix; proto/sft.proto)"));
  }
  return t;
}

absl::StatusOr<RenderedExample> RenderSftExample(const data::SftExample& example,
                                                 const data::SftTemplate& tmpl,
                                                 const std::string& where,
                                                 const Tokenizer* tokenizer) {
  const bool pair = !example.prompt().empty() || !example.response().empty();
  if (pair && example.messages_size() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": has both \"prompt\"/\"response\" and \"messages\"; give one form"));
  }
  if (!pair && example.messages_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": needs \"prompt\" and \"response\", or \"messages\" (none is given)"));
  }
  if (pair && (example.prompt().empty() || example.response().empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": \"", example.prompt().empty() ? "prompt" : "response", "\" is missing or empty"));
  }
  data::SftExample chat;
  if (pair) {
    auto* u = chat.add_messages();
    u->set_role("user");
    u->set_content(example.prompt());
    auto* a = chat.add_messages();
    a->set_role("assistant");
    a->set_content(example.response());
  } else {
    chat = example;
  }
  const ByteTokenizer bytes;
  const Tokenizer& tok = tokenizer != nullptr ? *tokenizer : static_cast<const Tokenizer&>(bytes);
  RenderedExample out;
  if (tok.bos() >= 0) {
    out.tokens.push_back(tok.bos());
    out.flags.push_back(0);
  }
  // Text is gathered into one context segment until an assistant's content; that content and
  // the assistant suffix are the next (counted) segment.
  std::string context;
  if (!tmpl.system_prompt().empty() && chat.messages(0).role() != "system") {
    context = SystemTurn(tmpl, tmpl.system_prompt());
  }
  bool learned = false;
  for (int i = 0; i < chat.messages_size(); ++i) {
    const data::SftMessage& m = chat.messages(i);
    if (m.role() == "system") {
      context += SystemTurn(tmpl, m.content());
    } else if (m.role() == "user") {
      context += tmpl.user_prefix() + m.content() + tmpl.user_suffix();
    } else if (m.role() == "assistant") {
      context += tmpl.assistant_prefix();
      Append(tok, context, 0, &out);
      context.clear();
      Append(tok, m.content() + tmpl.assistant_suffix(), kLossFlag, &out);
      learned = learned || !(m.content() + tmpl.assistant_suffix()).empty();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": messages[", i, "].role is \"",
                                                     m.role(),
                                                     "\"; expected system, user or assistant"));
    }
  }
  Append(tok, context, 0, &out);
  if (!learned) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": no assistant message with content: nothing to learn from"));
  }
  // End of text: counted after an assistant turn (the model learns to stop), context otherwise.
  const bool last_assistant = chat.messages(chat.messages_size() - 1).role() == "assistant";
  out.tokens.push_back(tok.eot());
  out.flags.push_back(last_assistant ? kLossFlag : 0);
  out.flags[0] |= kDocStartFlag;
  return out;
}

std::string RenderSftPrompt(const std::string& prompt, const data::SftTemplate& tmpl) {
  return (tmpl.system_prompt().empty() ? "" : SystemTurn(tmpl, tmpl.system_prompt())) +
         tmpl.user_prefix() + prompt + tmpl.user_suffix() + tmpl.assistant_prefix();
}

absl::StatusOr<SftPrepareResult> PrepareSftData(const SftPrepareOptions& o) {
  if (o.inputs.empty()) return absl::InvalidArgumentError("data sft: no --input given");
  if (!(o.val_fraction >= 0 && o.val_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data sft: --val-fraction must be in [0, 1), got ", o.val_fraction));
  }
  if (o.seq_len < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data sft: --seq-len must be >= 0, got ", o.seq_len));
  }
  if (!o.pack && o.seq_len == 0) {
    return absl::InvalidArgumentError("data sft: --no-pack needs --seq-len (the sample length)");
  }
  LOOM_ASSIGN_OR_RETURN(data::SftTemplate tmpl, LoadSftTemplate(o.template_name));
  if (!o.system_prompt.empty()) tmpl.set_system_prompt(o.system_prompt);
  std::unique_ptr<Tokenizer> loaded;
  if (!o.tokenizer.empty()) {
    auto t = LoadTokenizer(o.tokenizer);
    if (!t.ok()) {
      return absl::Status(t.status().code(),
                          absl::StrCat("data sft: --tokenizer: ", t.status().message()));
    }
    loaded = std::move(*t);
  }
  const ByteTokenizer bytes;
  const Tokenizer& tok = loaded ? *loaded : static_cast<const Tokenizer&>(bytes);
  // Every line first, so a malformed line anywhere fails before anything is written.
  struct Line {
    data::SftExample example;
    std::string where;
  };
  std::vector<Line> lines;
  google::protobuf::util::JsonParseOptions json;
  json.ignore_unknown_fields = false;
  for (const std::string& input : o.inputs) {
    std::ifstream in(input);
    if (!in) return absl::NotFoundError(absl::StrCat("data sft: cannot open input ", input));
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      const std::string where = absl::StrCat(input, ":", n);
      if (absl::StripAsciiWhitespace(line).empty()) continue;
      data::SftExample ex;
      const auto parsed = google::protobuf::util::JsonStringToMessage(line, &ex, json);
      if (!parsed.ok()) {
        std::string why(parsed.message());
        why = why.substr(0, why.find('\n'));  // protobuf adds the line and a caret below it
        return absl::InvalidArgumentError(absl::StrCat(
            where,
            ": not a JSON example ({\"prompt\", \"response\"} or {\"messages\": [{\"role\", "
            "\"content\"}]}): ",
            why));
      }
      lines.push_back({std::move(ex), where});
    }
  }
  if (lines.empty()) {
    return absl::InvalidArgumentError("data sft: the inputs hold no example (only blank lines)");
  }
  // Rendering and encoding on several threads; the first error in input order is reported.
  std::vector<absl::StatusOr<RenderedExample>> rendered(lines.size(),
                                                        absl::UnknownError("not rendered"));
  {
    const int threads = static_cast<int>(std::min<size_t>(
        lines.size(),
        o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency())));
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < lines.size();) {
        rendered[i] = RenderSftExample(lines[i].example, tmpl, lines[i].where, &tok);
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
  }
  std::vector<RenderedExample> examples;
  examples.reserve(rendered.size());
  for (auto& r : rendered) {
    LOOM_RETURN_IF_ERROR(r.status());
    examples.push_back(std::move(*r));
  }
  LOOM_RETURN_IF_ERROR(CheckOutDir(o));
  LOOM_RETURN_IF_ERROR(MakeDirs(o.out_dir));
  SftPrepareResult result;
  result.examples = static_cast<int64_t>(examples.size());
  result.tokenizer_type = std::string(tok.type());
  result.vocab_size = tok.vocab_size();
  result.id_bytes = ShardIdBytes(tok.vocab_size());
  const std::vector<int64_t> val = ValidationDocuments(result.examples, o.val_fraction);
  Packer train{o.seq_len, o.pack, tok.eot()}, valid{o.seq_len, o.pack, tok.eot()};
  size_t next_val = 0;
  for (int64_t i = 0; i < result.examples; ++i) {
    const bool is_val = next_val < val.size() && val[next_val] == i;
    if (is_val) ++next_val;
    (is_val ? valid : train).Add(std::move(examples[i]));
  }
  train.Finish();
  valid.Finish();
  result.val_examples = static_cast<int64_t>(val.size());
  result.train_examples = result.examples - result.val_examples;
  result.train_tokens = static_cast<int64_t>(train.tokens.size());
  result.val_tokens = static_cast<int64_t>(valid.tokens.size());
  for (uint8_t f : train.flags) result.loss_tokens += (f & kLossFlag) != 0;
  result.pad_tokens = train.pad + valid.pad;
  result.truncated = train.truncated + valid.truncated;
  auto write = [&](const Packer& p, const char* name, std::string* path) -> absl::Status {
    *path = (fs::path(o.out_dir) / name).string();
    LOOM_RETURN_IF_ERROR(WriteShardIds(*path, p.tokens, result.id_bytes));
    return WriteTokenFlags(TokenFlagsPath(*path), p.flags);
  };
  LOOM_RETURN_IF_ERROR(write(train, "train_000000.bin", &result.train_shard));
  if (!valid.tokens.empty()) {
    LOOM_RETURN_IF_ERROR(write(valid, "val_000000.bin", &result.val_shard));
  }
  LOOM_ASSIGN_OR_RETURN(result.tokenizer_path, WriteTokenizerBeside(o.out_dir, tok, o.tokenizer));
  result.template_path = (fs::path(o.out_dir) / "sft_template.textproto").string();
  std::string text;
  google::protobuf::TextFormat::PrintToString(tmpl, &text);
  LOOM_RETURN_IF_ERROR(AtomicWriteFile(result.template_path, text));
  return result;
}

}  // namespace loom
