// Job config text: parsing with every error located, --set overrides, loading a file.
#include "job/config_text.h"

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

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "job/config_defaults.h"

namespace loom {
namespace {

namespace pb = google::protobuf;

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

std::string JobConfigToText(const JobConfig& config) {
  std::string text;
  pb::TextFormat::Printer printer;
  printer.PrintToString(config, &text);
  return text;
}

}  // namespace loom
