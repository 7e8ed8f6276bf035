#include "launcher/config.h"


#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

#include "model/gpt_params.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/device.h"

namespace loom {
namespace {

namespace pb = google::protobuf;

// Defaults used beyond ApplyDefaults (by functions that accept a config without defaults, or
// that compare against the default): one definition each.
constexpr int kDefaultVocabPadMultiple = 128;
constexpr int kDefaultCollectiveTimeoutS = 300;
constexpr int kDefaultMaxNonfiniteSteps = 5;

// Upper bounds of job sizes that are not the model's (those are in model/gpt_config.h).
constexpr int64_t kMaxGridDegree = 1 << 16;
constexpr int64_t kMaxGlobalBatch = int64_t{1} << 30;
constexpr int64_t kMaxSteps = int64_t{1} << 40;
constexpr int64_t kMaxEvalBatches = 1 << 20;
// Parse errors reported at most, and the ones after a broken block are not attempted.
constexpr int kMaxParseErrors = 20;

// ---------------------------------------------------------------------------------------------
// Field paths: the text-format parser names message types ("loom.ModelConfig"), a user thinks
// in paths ("model.layers"). The helpers below recover the path at a parse error's position
// by re-tokenizing the text and tracking the enclosing `name { ... }` blocks.

class SilentErrors : public pb::io::ErrorCollector {
 public:
  void AddError(int, pb::io::ColumnNumber, const std::string&) override {}
};

std::string FieldNames(const pb::Descriptor* d) {
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

// The dotted field path at (line, column) (0-based) of a text-format JobConfig: the enclosing
// message fields plus the field whose name or value sits at that position.
std::string FieldPathAt(const std::string& text, int line, int column) {
  pb::io::ArrayInputStream input(text.data(), static_cast<int>(text.size()));
  SilentErrors silent;
  pb::io::Tokenizer tokenizer(&input, &silent);
  tokenizer.set_comment_style(pb::io::Tokenizer::SH_COMMENT_STYLE);
  std::vector<std::string> enclosing;
  std::string field;         // the field most recently named
  bool after_colon = false;  // the next token is a value
  bool in_list = false;      // inside [ ... ] of a repeated field's values
  bool reached = false;
  while (tokenizer.Next()) {
    const auto& t = tokenizer.current();
    reached = t.line > line || (t.line == line && t.column >= column);
    const bool is_name = t.type == pb::io::Tokenizer::TYPE_IDENTIFIER && !after_colon && !in_list;
    if (reached) {
      if (is_name && t.line == line && t.column == column) field = t.text;
      break;
    }
    if (is_name) {
      field = t.text;
    } else if (t.text == ":") {
      after_colon = true;
      continue;
    } else if (t.text == "{" || t.text == "<") {
      enclosing.push_back(field);
      field.clear();
    } else if (t.text == "}" || t.text == ">") {
      if (!enclosing.empty()) enclosing.pop_back();
      field.clear();
    } else if (t.text == "[") {
      in_list = after_colon;
    } else if (t.text == "]") {
      in_list = false;
    }
    after_colon = false;
  }
  // At the end of the text the error is about the enclosing block (an unclosed brace), not about
  // the last field written.
  if (!field.empty() && reached) enclosing.push_back(field);
  return absl::StrJoin(enclosing, ".");
}

// Collects the parser's errors with the source name and 1-based line:column.
class ConfigErrorCollector : public pb::io::ErrorCollector {
 public:
  ConfigErrorCollector(const std::string& source, const std::string& text)
      : source_(source), text_(text) {}

  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    lines_.push_back(line);
    std::string where = absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ");
    const std::string path = FieldPathAt(text_, line, column);
    if (!path.empty()) absl::StrAppend(&where, path, ": ");
    std::string hint;
    if (absl::StrContains(message, "has no field named")) hint = KnownFieldsHint(path);
    // The parser names the token it found; at the end of the text that name is empty.
    if (absl::EndsWith(message, ": ")) hint = "the end of the file (is a '}' missing?)";
    errors_.push_back(absl::StrCat(where, message, hint));
  }
  // Warnings do not fail a parse; they are shown only with the errors of a failing one.
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    warnings_.push_back(
        absl::StrCat(source_, ":", line + 1, ":", column + 1, ": warning: ", message));
  }

  const std::vector<std::string>& errors() const { return errors_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  // 0-based line of each error.
  const std::vector<int>& lines() const { return lines_; }

 private:
  // " (model has: family, layers, ...)" for an unknown field at `path`.
  static std::string KnownFieldsHint(const std::string& path) {
    std::vector<std::string> parts = absl::StrSplit(path, '.');
    const pb::Descriptor* d = JobConfig::descriptor();
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const pb::FieldDescriptor* f = d->FindFieldByName(parts[i]);
      if (f == nullptr || f->message_type() == nullptr) return "";
      d = f->message_type();
    }
    const std::string owner =
        parts.size() > 1 ? path.substr(0, path.rfind('.')) : std::string("the job config");
    return absl::StrCat(" (", owner, " has: ", FieldNames(d), ")");
  }

  std::string source_;
  const std::string& text_;
  std::vector<std::string> errors_;
  std::vector<std::string> warnings_;
  std::vector<int> lines_;
};

// ---------------------------------------------------------------------------------------------
// --set values.

std::string Unquote(absl::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return std::string(v);
}

// Parses `text` into `field` of `msg` (appending when the field is repeated). Returns what was
// expected on failure, empty on success.
std::string SetScalar(pb::Message* msg, const pb::FieldDescriptor* f, absl::string_view text) {
  const pb::Reflection* r = msg->GetReflection();
  const bool rep = f->is_repeated();
  const std::string t(absl::StripAsciiWhitespace(text));
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(t, &v)) return "an integer (32-bit)";
      rep ? r->AddInt32(msg, f, v) : r->SetInt32(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(t, &v)) return "an integer (64-bit)";
      rep ? r->AddInt64(msg, f, v) : r->SetInt64(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(t, &v)) return "a non-negative integer (32-bit)";
      rep ? r->AddUInt32(msg, f, v) : r->SetUInt32(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(t, &v)) return "a non-negative integer (64-bit)";
      rep ? r->AddUInt64(msg, f, v) : r->SetUInt64(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(t, &v) || !std::isfinite(v)) return "a finite number";
      rep ? r->AddDouble(msg, f, v) : r->SetDouble(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(t, &v) || !std::isfinite(v)) return "a finite number";
      rep ? r->AddFloat(msg, f, v) : r->SetFloat(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(t);
      bool v;
      if (lower == "true" || lower == "1") {
        v = true;
      } else if (lower == "false" || lower == "0") {
        v = false;
      } else {
        return "true or false";
      }
      rep ? r->AddBool(msg, f, v) : r->SetBool(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor* e = f->enum_type();
      const pb::EnumValueDescriptor* v = e->FindValueByName(t);
      if (v == nullptr) v = e->FindValueByName(absl::AsciiStrToUpper(t));
      if (v == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < e->value_count(); ++i) names.push_back(e->value(i)->name());
        return absl::StrCat("one of ", absl::StrJoin(names, ", "));
      }
      rep ? r->AddEnum(msg, f, v) : r->SetEnum(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      // Strings keep their spaces: only the quotes come off.
      const std::string v = Unquote(text);
      rep ? r->AddString(msg, f, v) : r->SetString(msg, f, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return "a scalar value";
}

// ---------------------------------------------------------------------------------------------
// Validation helpers.

std::string Num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// "1,234,567".
std::string Grouped(int64_t v) {
  std::string digits = absl::StrCat(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

// "124.4M", "1.10B".
std::string Short(int64_t v) {
  char buf[32];
  if (v >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.2fB", v / 1e9);
  } else if (v >= 1000000) {
    std::snprintf(buf, sizeof(buf), "%.1fM", v / 1e6);
  } else if (v >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.1fK", v / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
  }
  return buf;
}

// Layers of each model chunk (model order), or empty when the config cannot be split.
std::vector<int> ChunkLayers(const JobConfig& c) {
  const auto& p = c.parallel();
  const int64_t chunks = static_cast<int64_t>(p.pp()) * p.virtual_stages();
  if (chunks <= 0 || c.model().layers() <= 0) return {};
  if (p.stage_layers_size() > 0) {
    if (p.stage_layers_size() != chunks) return {};
    return std::vector<int>(p.stage_layers().begin(), p.stage_layers().end());
  }
  if (c.model().layers() % chunks != 0) return {};
  return std::vector<int>(chunks, static_cast<int>(c.model().layers() / chunks));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::StatusOr<JobConfig> ParseJobConfigText(const std::string& text, const std::string& source) {
  // The text-format parser stops at its first error. To report them all, the line of each error
  // is blanked (kept as a line, so later positions stay true) and the text parsed again. A line
  // that opens or closes a block is not blanked: the braces would no longer match and every
  // later error would be an echo of this one, so the report stops there.
  std::string work = text;
  std::vector<std::string> errors, warnings;
  std::vector<int> blanked;
  for (int round = 0; round < kMaxParseErrors; ++round) {
    JobConfig config;
    ConfigErrorCollector collector(source, work);
    pb::TextFormat::Parser parser;
    parser.RecordErrorsTo(&collector);
    const bool ok = parser.ParseFromString(work, &config);
    if (ok && collector.errors().empty()) {
      if (errors.empty()) return config;
      break;
    }
    if (collector.errors().empty()) {
      errors.push_back(absl::StrCat(source, ": not a valid text-format JobConfig"));
      break;
    }
    errors.push_back(collector.errors()[0]);
    if (warnings.empty()) warnings = collector.warnings();
    const int line = collector.lines()[0];
    // Find the error's line in the text.
    size_t begin = 0;
    for (int l = 0; l < line && begin != std::string::npos; ++l) {
      begin = work.find('\n', begin);
      if (begin != std::string::npos) ++begin;
    }
    if (begin == std::string::npos || begin >= work.size()) break;  // at the end of the text
    size_t end = work.find('\n', begin);
    if (end == std::string::npos) end = work.size();
    const std::string_view content(work.data() + begin, end - begin);
    if (content.find_first_of("{}<>[]") != std::string_view::npos ||
        std::find(blanked.begin(), blanked.end(), line) != blanked.end()) {
      break;
    }
    blanked.push_back(line);
    for (size_t i = begin; i < end; ++i) work[i] = ' ';
  }
  std::vector<std::string> lines;
  if (errors.size() > 1) {
    lines.push_back(absl::StrCat(errors.size(), " errors in ", source, ":"));
  }
  lines.insert(lines.end(), errors.begin(), errors.end());
  lines.insert(lines.end(), warnings.begin(), warnings.end());
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

absl::Status ApplyOverride(JobConfig* config, const std::string& assignment) {
  auto fail = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("--set ", assignment, ": ", why));
  };
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) return fail("expected path.to.field=value");
  const std::string path(absl::StripAsciiWhitespace(assignment.substr(0, eq)));
  const std::string value = assignment.substr(eq + 1);
  if (path.empty()) return fail("expected path.to.field=value (the field path is empty)");

  std::vector<std::string> parts = absl::StrSplit(path, '.');
  pb::Message* msg = config;
  std::string walked;  // the path so far, for messages
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* d = msg->GetDescriptor();
    const pb::FieldDescriptor* f = d->FindFieldByName(parts[i]);
    const std::string owner = walked.empty() ? std::string("the job config") : walked;
    if (f == nullptr) {
      return fail(
          absl::StrCat("unknown field '", parts[i], "' (", owner, " has: ", FieldNames(d), ")"));
    }
    walked = walked.empty() ? parts[i] : absl::StrCat(walked, ".", parts[i]);
    const bool last = i + 1 == parts.size();
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (last || f->is_repeated()) {
        return fail(absl::StrCat(walked, " is a message; set one of its fields (", walked,
                                 ".<field>, with <field> one of: ", FieldNames(f->message_type()),
                                 ")"));
      }
      msg = msg->GetReflection()->MutableMessage(msg, f);
      continue;
    }
    if (!last) {
      return fail(absl::StrCat(walked, " is a scalar (", f->cpp_type_name(),
                               "), not a message, so it has no field '", parts[i + 1], "'"));
    }
    if (!f->is_repeated()) {
      const std::string expected = SetScalar(msg, f, value);
      if (!expected.empty()) {
        return fail(absl::StrCat(walked, ": expected ", expected, ", got '", value, "'"));
      }
      return absl::OkStatus();
    }
    // Repeated scalar: "a,b,c" or "[a, b, c]" replaces the contents; "" or "[]" clears.
    absl::string_view list = absl::StripAsciiWhitespace(value);
    if (absl::ConsumePrefix(&list, "[") && !absl::ConsumeSuffix(&list, "]")) {
      return fail(absl::StrCat(walked, ": expected a list like [1,2,3]; the ']' is missing"));
    }
    // Parse into a scratch message first so a bad item leaves the config untouched.
    std::unique_ptr<pb::Message> scratch(msg->New());
    if (!absl::StripAsciiWhitespace(list).empty()) {
      for (absl::string_view item : absl::StrSplit(list, ',')) {
        const std::string expected = SetScalar(scratch.get(), f, item);
        if (!expected.empty()) {
          return fail(absl::StrCat(
              walked, ": expected a comma-separated list, each item ", expected, ", got '",
              std::string(absl::StripAsciiWhitespace(item)), "' in '", value, "'"));
        }
      }
    }
    msg->GetReflection()->SwapFields(msg, scratch.get(), {f});
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

int64_t LlamaFfnHidden(int64_t hidden) {
  const int64_t inner = 2 * (4 * hidden) / 3;
  return (inner + 255) / 256 * 256;
}

void ApplyDefaults(JobConfig* c) {
  ModelConfig* m = c->mutable_model();
  if (!m->has_family()) m->set_family(ModelConfig::GPT2);
  const bool llama = m->family() == ModelConfig::LLAMA;
  if (m->kv_heads() == 0) m->set_kv_heads(m->heads());
  if (m->ffn_hidden() == 0 && m->hidden() > 0) {
    const int64_t ffn = llama ? LlamaFfnHidden(m->hidden()) : 4 * int64_t{m->hidden()};
    if (ffn <= std::numeric_limits<int32_t>::max()) m->set_ffn_hidden(static_cast<int32_t>(ffn));
  }
  if (!m->has_tied_embeddings()) m->set_tied_embeddings(!llama);
  if (!m->has_norm_eps()) m->set_norm_eps(1e-5);
  if (!m->has_rope_theta()) m->set_rope_theta(10000.0);
  if (!m->has_vocab_pad_multiple()) m->set_vocab_pad_multiple(kDefaultVocabPadMultiple);

  ParallelConfig* p = c->mutable_parallel();
  if (!p->has_tp()) p->set_tp(1);
  if (!p->has_pp()) p->set_pp(1);
  if (!p->has_virtual_stages()) p->set_virtual_stages(1);
  if (!p->has_micro_batch_size()) p->set_micro_batch_size(1);
  if (!p->has_schedule()) p->set_schedule(ParallelConfig::ONE_F_ONE_B);
  if (!p->has_grad_bucket_mb()) p->set_grad_bucket_mb(25.0);

  OptimizerConfig* o = c->mutable_optimizer();
  if (!o->has_beta1()) o->set_beta1(0.9);
  if (!o->has_beta2()) o->set_beta2(0.95);
  if (!o->has_eps()) o->set_eps(1e-8);
  if (!o->has_weight_decay()) o->set_weight_decay(0.1);
  if (!o->has_grad_clip()) o->set_grad_clip(1.0);

  LrScheduleConfig* s = c->mutable_lr_schedule();
  if (!s->has_decay_style()) s->set_decay_style(LrScheduleConfig::COSINE);

  RuntimeConfig* rt = c->mutable_runtime();
  if (!rt->has_backend()) rt->set_backend(RuntimeConfig::AUTO);
  if (!rt->has_collective_timeout_s()) rt->set_collective_timeout_s(kDefaultCollectiveTimeoutS);
  if (!rt->has_seed()) rt->set_seed(1337);
  if (!rt->has_max_nonfinite_steps()) rt->set_max_nonfinite_steps(kDefaultMaxNonfiniteSteps);
  if (!rt->has_stop_margin_s() && rt->max_duration_s() > 0) {
    rt->set_stop_margin_s(static_cast<int32_t>(std::min<int64_t>(60, rt->max_duration_s() / 10)));
  }

  DataConfig* d = c->mutable_data();
  if (!d->has_format()) d->set_format(DataConfig::LLMC);
  if (d->seq_len() == 0) d->set_seq_len(m->max_seq());
  if (!d->has_shuffle()) d->set_shuffle(true);
  if (!d->has_seed()) d->set_seed(rt->seed());

  CheckpointConfig* k = c->mutable_checkpoint();
  if (!k->has_async()) k->set_async(false);
  const std::string resume = absl::AsciiStrToUpper(k->resume());
  if (k->resume().empty() || resume == "AUTO") {
    k->set_resume("AUTO");
  } else if (resume == "NONE") {
    k->set_resume("NONE");
  }

  LoggingConfig* l = c->mutable_logging();
  if (!l->has_interval()) l->set_interval(1);
  if (!l->has_jsonl()) l->set_jsonl(true);
  if (!l->has_tensorboard()) l->set_tensorboard(true);
  if (!l->has_eval_batches()) l->set_eval_batches(20);
  if (!l->has_sample_length()) {
    l->set_sample_length(m->max_seq() > 0 ? std::min(64, m->max_seq()) : 64);
  }

  if (!c->has_precision()) c->set_precision(JobConfig::FP32);
}

absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path,
                                        const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job config '", path, "' is a directory; --config takes a text-format JobConfig file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return absl::NotFoundError(
        absl::StrCat("cannot read job config '", path, "': ", std::strerror(err)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading job config '", path, "'"));
  auto config = ParseJobConfigText(buffer.str(), path);
  // Every --set is tried even when the file or an earlier --set failed, so one run names every
  // mistake (on a blank config when the file did not parse: a path or value error shows anyway).
  JobConfig scratch;
  JobConfig* target = config.ok() ? &*config : &scratch;
  std::vector<std::string> errors;
  if (!config.ok()) errors.push_back(std::string(config.status().message()));
  for (const std::string& o : overrides) {
    absl::Status s = ApplyOverride(target, o);
    if (!s.ok()) errors.push_back(std::string(s.message()));
  }
  if (!errors.empty()) {
    if (config.ok() && errors.size() == 1) return absl::InvalidArgumentError(errors[0]);
    if (!config.ok() && errors.size() == 1) return config.status();
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  ApplyDefaults(&*config);
  return config;
}

absl::Status ExtractConfigFlags(std::vector<std::string>* args, std::string* path,
                                std::vector<std::string>* overrides) {
  std::vector<std::string> rest;
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    auto value_of = [&](const std::string& flag, std::string* out) -> absl::StatusOr<bool> {
      if (a == flag) {
        if (i + 1 >= args->size()) {
          return absl::InvalidArgumentError(absl::StrCat(
              flag, " needs a value", flag == "--set" ? " (path.to.field=value)" : " (a file)"));
        }
        *out = (*args)[++i];
        return true;
      }
      if (absl::StartsWith(a, flag + "=")) {
        *out = a.substr(flag.size() + 1);
        return true;
      }
      return false;
    };
    std::string v;
    auto is_config = value_of("--config", &v);
    if (!is_config.ok()) return is_config.status();
    if (*is_config) {
      if (!path->empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--config is given twice ('", *path, "' and '", v,
                         "'); give one job file and change fields with --set"));
      }
      *path = v;
      continue;
    }
    auto is_set = value_of("--set", &v);
    if (!is_set.ok()) return is_set.status();
    if (*is_set) {
      overrides->push_back(v);
      continue;
    }
    rest.push_back(a);
  }
  *args = std::move(rest);
  return absl::OkStatus();
}

std::vector<std::string> ConfigProblems(const JobConfig& config_in, int world_size) {
  JobConfig c = config_in;
  ApplyDefaults(&c);
  const ModelConfig& m = c.model();
  const ParallelConfig& p = c.parallel();
  const OptimizerConfig& o = c.optimizer();
  const LrScheduleConfig& s = c.lr_schedule();
  const DataConfig& d = c.data();
  const CheckpointConfig& k = c.checkpoint();
  const LoggingConfig& l = c.logging();
  const RuntimeConfig& rt = c.runtime();
  std::vector<std::string> problems;
  auto add = [&](auto&&... parts) { problems.push_back(absl::StrCat(parts...)); };
  auto at_least = [&](const char* field, int64_t v, int64_t min) {
    if (v < min) add(field, " must be >= ", min, " (got ", v, ")");
  };
  // Upper bounds keep every product of sizes within int64 (and name the field the user wrote
  // rather than a derived number that overflowed).
  auto at_most = [&](const char* field, int64_t v, int64_t max) {
    if (v > max) add(field, " (", v, ") exceeds ", max, ", the most loom accepts");
  };

  // Model shape: the rules live with the model (GptConfig::Problems), named as job fields.
  for (std::string& problem : GptConfigFromJob(c).Problems())
    problems.push_back(std::move(problem));
  at_least("model.vocab_pad_multiple", m.vocab_pad_multiple(), 1);
  if (m.vocab() > 65536) {
    add("model.vocab (", m.vocab(),
        ") exceeds 65536, the most token ids uint16 token shards "
        "(data.format LLMC or RAW_U16) can hold");
  }

  // The grid.
  const int64_t tp = p.tp(), pp = p.pp(), vs = p.virtual_stages();
  int64_t dp = p.dp();
  at_least("world size", world_size, 1);
  at_least("parallel.tp", tp, 1);
  at_least("parallel.pp", pp, 1);
  at_least("parallel.virtual_stages", vs, 1);
  at_most("parallel.tp", tp, kMaxGridDegree);
  at_most("parallel.pp", pp, kMaxGridDegree);
  at_most("parallel.virtual_stages", vs, kMaxGridDegree);
  at_most("parallel.dp", dp, kMaxGridDegree);
  if (dp < 0) add("parallel.dp must be >= 0 (0 = derive from the world size; got ", dp, ")");
  if (tp >= 1 && pp >= 1 && world_size >= 1 && dp >= 0) {
    if (dp == 0) {
      if (world_size % (tp * pp) != 0) {
        add("world size ", world_size, " is not divisible by parallel.tp (", tp,
            ") * parallel.pp (", pp, ") = ", tp * pp, ", so parallel.dp cannot be derived");
      } else {
        dp = world_size / (tp * pp);
      }
    } else if (dp * tp * pp != world_size) {
      add("world size ", world_size, " != parallel.dp (", dp, ") * parallel.tp (", tp,
          ") * parallel.pp (", pp, ") = ", dp * tp * pp);
    }
  }

  // Tensor parallelism splits heads, kv heads and the MLP; the vocab is padded instead.
  if (tp >= 1) {
    if (m.heads() > 0 && m.heads() % tp != 0) {
      add("model.heads (", m.heads(), ") is not divisible by parallel.tp (", tp, ")");
    }
    if (m.kv_heads() > 0 && m.kv_heads() % tp != 0) {
      add("model.kv_heads (", m.kv_heads(), ") is not divisible by parallel.tp (", tp, ")");
    }
    if (m.ffn_hidden() > 0 && m.ffn_hidden() % tp != 0) {
      add("model.ffn_hidden (", m.ffn_hidden(), ") is not divisible by parallel.tp (", tp, ")");
    }
  }

  // Pipeline split.
  if (pp >= 1 && vs >= 1) {
    const int64_t chunks = pp * vs;
    if (p.stage_layers_size() == 0) {
      if (m.layers() > 0 && m.layers() % chunks != 0) {
        add("model.layers (", m.layers(), ") is not divisible by parallel.pp (", pp,
            ") * parallel.virtual_stages (", vs, ") = ", chunks,
            "; set parallel.stage_layers to split them unevenly");
      }
    } else {
      if (p.stage_layers_size() != chunks) {
        add("parallel.stage_layers has ", p.stage_layers_size(), " entries, expected parallel.pp (",
            pp, ") * parallel.virtual_stages (", vs, ") = ", chunks);
      }
      int64_t sum = 0;
      for (int i = 0; i < p.stage_layers_size(); ++i) {
        sum += p.stage_layers(i);
        if (p.stage_layers(i) < 1) {
          add("parallel.stage_layers[", i, "] is ", p.stage_layers(i),
              "; every model chunk needs at least 1 layer");
        }
      }
      if (m.layers() > 0 && sum != m.layers()) {
        add("parallel.stage_layers sums to ", sum, ", expected model.layers (", m.layers(), ")");
      }
    }
  }
  if (vs > 1 && p.schedule() != ParallelConfig::INTERLEAVED) {
    add("parallel.virtual_stages (", vs, ") > 1 needs parallel.schedule INTERLEAVED (got ",
        ParallelConfig::Schedule_Name(p.schedule()), ")");
  }
  if (vs > 1 && pp == 1) {
    add("parallel.virtual_stages (", vs, ") > 1 needs parallel.pp > 1 (got 1)");
  }
  if (p.schedule() == ParallelConfig::INTERLEAVED && vs == 1) {
    add("parallel.schedule INTERLEAVED needs parallel.virtual_stages > 1 (got 1)");
  }
  if (!(p.grad_bucket_mb() > 0) || !std::isfinite(p.grad_bucket_mb())) {
    add("parallel.grad_bucket_mb must be > 0 (got ", Num(p.grad_bucket_mb()), ")");
  }

  // Batch.
  const int64_t micro = p.micro_batch_size(), global = p.global_batch_size();
  at_least("parallel.micro_batch_size", micro, 1);
  at_least("parallel.global_batch_size", global, 1);
  at_most("parallel.global_batch_size", global, kMaxGlobalBatch);
  if (micro >= 1 && global >= 1 && dp >= 1) {
    if (global % (micro * dp) != 0) {
      add("parallel.global_batch_size (", global,
          ") is not divisible by "
          "parallel.micro_batch_size (",
          micro, ") * dp (", dp, ") = ", micro * dp);
    } else if (p.schedule() == ParallelConfig::INTERLEAVED && pp > 1 && vs > 1 &&
               (global / (micro * dp)) % pp != 0) {
      add("parallel.schedule INTERLEAVED needs the micro-batches per step (",
          "parallel.global_batch_size ", global, " / (parallel.micro_batch_size ", micro, " * dp ",
          dp, ") = ", global / (micro * dp), ") to be a multiple of parallel.pp (", pp, ")");
    }
  }

  // Sequence.
  if (m.max_seq() > 0) {
    at_least("data.seq_len", d.seq_len(), 1);
    if (d.seq_len() > m.max_seq()) {
      add("data.seq_len (", d.seq_len(), ") exceeds model.max_seq (", m.max_seq(), ")");
    }
  }
  if (p.sequence_parallel() && tp > 1 && d.seq_len() > 0 && d.seq_len() % tp != 0) {
    add("parallel.sequence_parallel splits data.seq_len (", d.seq_len(), ") over parallel.tp (", tp,
        ") ranks, but ", d.seq_len(), " is not divisible by ", tp);
  }

  // Optimizer and schedule.
  if (!(o.lr() > 0) || !std::isfinite(o.lr())) {
    add("optimizer.lr must be > 0 (got ", Num(o.lr()), ")");
  }
  if (!(o.beta1() >= 0 && o.beta1() < 1)) {
    add("optimizer.beta1 must be in [0, 1) (got ", Num(o.beta1()), ")");
  }
  if (!(o.beta2() >= 0 && o.beta2() < 1)) {
    add("optimizer.beta2 must be in [0, 1) (got ", Num(o.beta2()), ")");
  }
  if (!(o.eps() > 0)) add("optimizer.eps must be > 0 (got ", Num(o.eps()), ")");
  if (!(o.weight_decay() >= 0)) {
    add("optimizer.weight_decay must be >= 0 (got ", Num(o.weight_decay()), ")");
  }
  if (!(o.grad_clip() >= 0)) {
    add("optimizer.grad_clip must be >= 0 (0 = no clipping; got ", Num(o.grad_clip()), ")");
  }
  at_least("lr_schedule.total_steps", s.total_steps(), 1);
  at_most("lr_schedule.total_steps", s.total_steps(), kMaxSteps);
  at_least("lr_schedule.warmup_steps", s.warmup_steps(), 0);
  if (s.total_steps() >= 1 && s.warmup_steps() > s.total_steps()) {
    add("lr_schedule.warmup_steps (", s.warmup_steps(), ") exceeds lr_schedule.total_steps (",
        s.total_steps(), ")");
  }
  if (!(s.min_lr() >= 0)) add("lr_schedule.min_lr must be >= 0 (got ", Num(s.min_lr()), ")");
  if (o.lr() > 0 && s.min_lr() > o.lr()) {
    add("lr_schedule.min_lr (", Num(s.min_lr()), ") exceeds optimizer.lr (", Num(o.lr()), ")");
  }
  at_least("runtime.stop_at_step", rt.stop_at_step(), 0);
  if (s.total_steps() >= 1 && rt.stop_at_step() > s.total_steps()) {
    add("runtime.stop_at_step (", rt.stop_at_step(), ") exceeds lr_schedule.total_steps (",
        s.total_steps(), ")");
  }

  // Data, checkpoints, logging.
  if (d.train().empty()) {
    add("data.train is empty; it must name the training shards (a glob such as "
        "data/demo/train_*.bin)");
  }
  at_least("checkpoint.interval", k.interval(), 0);
  at_least("checkpoint.keep_last", k.keep_last(), 0);
  if (k.interval() > 0 && k.dir().empty()) {
    add("checkpoint.interval (", k.interval(), ") is set but checkpoint.dir is empty");
  }
  at_least("logging.interval", l.interval(), 1);
  if (l.eval_interval() > 0) at_most("logging.eval_batches", l.eval_batches(), kMaxEvalBatches);
  at_least("logging.eval_interval", l.eval_interval(), 0);
  at_least("logging.sample_interval", l.sample_interval(), 0);
  if (l.eval_interval() > 0) {
    if (d.val().empty()) {
      add("logging.eval_interval (", l.eval_interval(), ") is set but data.val is empty");
    }
    at_least("logging.eval_batches", l.eval_batches(), 1);
  }
  if (l.sample_interval() > 0) {
    at_least("logging.sample_length", l.sample_length(), 1);
    if (m.max_seq() > 0 && l.sample_length() > m.max_seq()) {
      add("logging.sample_length (", l.sample_length(), ") exceeds model.max_seq (", m.max_seq(),
          ")");
    }
  }

  // Runtime.
  at_least("runtime.collective_timeout_s", rt.collective_timeout_s(), 1);
  at_least("runtime.threads_per_rank", rt.threads_per_rank(), 0);
  at_least("runtime.max_nonfinite_steps", rt.max_nonfinite_steps(), 1);
  at_least("runtime.max_duration_s", rt.max_duration_s(), 0);
  if (rt.max_duration_s() > 0) {
    at_least("runtime.stop_margin_s", rt.stop_margin_s(), 0);
    if (rt.stop_margin_s() >= rt.max_duration_s()) {
      add("runtime.stop_margin_s (", rt.stop_margin_s(), ") must be less than runtime.max_duration_s (",
          rt.max_duration_s(), ")");
    }
  }
  if (c.precision() == JobConfig::BF16 &&
      (rt.backend() == RuntimeConfig::CPU || rt.backend() == RuntimeConfig::TEST)) {
    add("precision BF16 needs a GPU, but runtime.backend is ",
        rt.backend() == RuntimeConfig::CPU ? "CPU" : "TEST",
        " (the CPU kernels, which the test device runs too, are fp32 only)");
  }
  return problems;
}

absl::Status ValidateJobConfig(const JobConfig& config, int world_size) {
  const std::vector<std::string> problems = ConfigProblems(config, world_size);
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(problems.size(),
                                                 problems.size() == 1 ? " problem" : " problems",
                                                 " in the job config (world size ", world_size,
                                                 "):\n  - ", absl::StrJoin(problems, "\n  - ")));
}

GptConfig GptConfigFromJob(const JobConfig& job) {
  const ModelConfig& m = job.model();
  GptConfig c;
  c.family = m.family() == ModelConfig::LLAMA ? ModelFamily::kLlama : ModelFamily::kGpt2;
  c.layers = m.layers();
  c.heads = m.heads();
  c.kv_heads = m.kv_heads() > 0 ? m.kv_heads() : m.heads();
  c.hidden = m.hidden();
  c.ffn_hidden = m.ffn_hidden();
  c.vocab = m.vocab();
  c.padded_vocab = PaddedVocab(job);
  c.max_seq = m.max_seq();
  c.tied_embeddings = m.tied_embeddings();
  c.norm_eps = static_cast<float>(m.norm_eps());
  c.rope_theta = static_cast<float>(m.rope_theta());
  return c;
}

std::vector<std::string> NotYetSupported(const JobConfig& c) {
  std::vector<std::string> out;
  auto add = [&](auto&&... parts) { out.push_back(absl::StrCat(parts...)); };
  // BF16 with an explicit CPU backend is a contradiction ConfigProblems reports; here the
  // backend AUTO falls to the CPU for lack of a GPU.
  if (c.precision() == JobConfig::BF16 && c.runtime().backend() == RuntimeConfig::AUTO &&
      CudaDeviceCount() == 0) {
    add("precision BF16 needs a CUDA GPU, but ", CudaUnavailableReason(),
        " (the CPU backend computes in FP32 only)");
  }
  return out;
}

int64_t PaddedVocab(const JobConfig& config) {
  const int64_t vocab = config.model().vocab();
  const int64_t pad = config.model().has_vocab_pad_multiple() ? config.model().vocab_pad_multiple()
                                                              : kDefaultVocabPadMultiple;
  const int64_t tp = config.parallel().has_tp() ? config.parallel().tp() : 1;
  const int64_t multiple = std::max<int64_t>(1, pad) * std::max<int64_t>(1, tp);
  return (vocab + multiple - 1) / multiple * multiple;
}

int64_t ParameterCount(const ModelConfig& m) {
  JobConfig job;
  *job.mutable_model() = m;
  return GptParameterCount(GptConfigFromJob(job));
}

absl::StatusOr<DerivedNumbers> DeriveNumbers(const JobConfig& config_in, int world_size) {
  JobConfig c = config_in;
  ApplyDefaults(&c);
  absl::Status valid = ValidateJobConfig(c, world_size);
  if (!valid.ok()) return valid;
  const ParallelConfig& p = c.parallel();
  DerivedNumbers d;
  d.world_size = world_size;
  d.tp = p.tp();
  d.pp = p.pp();
  d.virtual_stages = p.virtual_stages();
  d.dp = p.dp() > 0 ? p.dp() : world_size / (d.tp * d.pp);
  d.sequences_per_step = p.global_batch_size();
  d.grad_accum_steps = p.global_batch_size() / (int64_t{p.micro_batch_size()} * d.dp);
  d.tokens_per_step = d.sequences_per_step * c.data().seq_len();
  d.padded_vocab = PaddedVocab(c);
  d.vocab_per_tp_rank = d.padded_vocab / d.tp;
  d.head_dim = c.model().hidden() / c.model().heads();
  d.parameters = ParameterCount(c.model());
  const int64_t pad_rows = d.padded_vocab - c.model().vocab();
  d.padded_parameters =
      d.parameters + pad_rows * c.model().hidden() * (c.model().tied_embeddings() ? 1 : 2);
  d.steps_this_run =
      c.runtime().stop_at_step() > 0 ? c.runtime().stop_at_step() : c.lr_schedule().total_steps();
  d.chunk_layers = ChunkLayers(c);
  int first = 0;
  for (int n : d.chunk_layers) {
    d.chunk_first_layer.push_back(first);
    first += n;
  }
  return d;
}

std::string FormatDerivedNumbers(const DerivedNumbers& d, const std::string& prefix) {
  std::vector<std::string> lines;
  lines.push_back(absl::StrCat("world size: ", d.world_size, " = dp ", d.dp, " x tp ", d.tp,
                               " x pp ", d.pp, " (virtual stages ", d.virtual_stages, ")"));
  lines.push_back(
      absl::StrCat("parameters: ", Grouped(d.parameters), " (", Short(d.parameters),
                   "); allocated with the padded vocab: ", Grouped(d.padded_parameters)));
  lines.push_back(absl::StrCat("padded vocab: ", d.padded_vocab, " (", d.vocab_per_tp_rank,
                               " rows per tensor rank)"));
  lines.push_back(absl::StrCat("head dim: ", d.head_dim));
  lines.push_back(absl::StrCat("batch: ", d.sequences_per_step, " sequences per step = micro ",
                               d.sequences_per_step / (d.grad_accum_steps * d.dp), " x dp ", d.dp,
                               " x ", d.grad_accum_steps, " accumulation steps; ",
                               Grouped(d.tokens_per_step), " tokens per step"));
  for (int s = 0; s < d.pp; ++s) {
    std::vector<std::string> chunks;
    for (int v = 0; v < d.virtual_stages; ++v) {
      const int n = d.LayersOf(s, v), first = d.FirstLayerOf(s, v);
      chunks.push_back(n == 1 ? absl::StrCat("layer ", first)
                              : absl::StrCat("layers ", first, "-", first + n - 1));
    }
    lines.push_back(absl::StrCat("stage ", s, ": ", absl::StrJoin(chunks, ", ")));
  }
  lines.push_back(absl::StrCat("steps this run: ", d.steps_this_run));
  std::string out;
  for (const auto& line : lines) absl::StrAppend(&out, prefix, line, "\n");
  return out;
}

std::string JobConfigToText(const JobConfig& config) {
  std::string text;
  pb::TextFormat::Printer printer;
  printer.PrintToString(config, &text);
  return text;
}

}  // namespace loom
