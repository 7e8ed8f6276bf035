#include "launcher/flags.h"

#include <algorithm>
#include <cmath>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace loom {
namespace {

constexpr size_t kWidth = 100;      // the usage is wrapped to this many columns
constexpr size_t kFlagColumn = 24;  // flag help starts here (longer flags: on the next line)

// Appends `words` to `out` wrapped at kWidth, continuation lines indented by `indent`.
void AppendWrapped(std::string* out, size_t column, size_t indent, absl::string_view text) {
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    const bool first = out->empty() || out->back() == '\n' || out->back() == ' ';
    if (!first && column + 1 + word.size() > kWidth) {
      absl::StrAppend(out, "\n", std::string(indent, ' '));
      column = indent;
    } else if (!first) {
      out->push_back(' ');
      ++column;
    }
    absl::StrAppend(out, word);
    column += word.size();
  }
}

std::string FormatNumber(double v) { return absl::StrFormat("%g", v); }

std::string Quoted(absl::string_view s) { return absl::StrCat("'", s, "'"); }

}  // namespace

FlagSet::Flag& FlagSet::Flag::Alias(std::string alias) {
  aliases.push_back(std::move(alias));
  return *this;
}
FlagSet::Flag& FlagSet::Flag::Required() {
  required = true;
  default_text.clear();
  return *this;
}
FlagSet::Flag& FlagSet::Flag::AtLeast(double v) {
  has_least = true;
  least = v;
  return *this;
}
FlagSet::Flag& FlagSet::Flag::Positive() {
  positive = true;
  return *this;
}
FlagSet::Flag& FlagSet::Flag::DefaultText(std::string text) {
  default_text = std::move(text);
  return *this;
}
FlagSet::Flag& FlagSet::Flag::TakesWords() {
  takes_words = true;
  return *this;
}

FlagSet::FlagSet(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

FlagSet::Flag& FlagSet::Add(std::string name, Flag::Kind kind, void* target, std::string value_name,
                            std::string help) {
  auto f = std::make_unique<Flag>();
  f->name = std::move(name);
  f->kind = kind;
  f->target = target;
  f->value_name = std::move(value_name);
  f->help = std::move(help);
  flags_.push_back(std::move(f));
  return *flags_.back();
}

FlagSet::Flag& FlagSet::String(std::string name, std::string* target, std::string value_name,
                               std::string help) {
  Flag& f =
      Add(std::move(name), Flag::Kind::kString, target, std::move(value_name), std::move(help));
  f.default_text = *target;
  return f;
}

FlagSet::Flag& FlagSet::Int(std::string name, int* target, std::string value_name,
                            std::string help) {
  Flag& f = Add(std::move(name), Flag::Kind::kInt, target, std::move(value_name), std::move(help));
  f.default_text = absl::StrCat(*target);
  return f;
}

FlagSet::Flag& FlagSet::Int64(std::string name, int64_t* target, std::string value_name,
                              std::string help) {
  Flag& f =
      Add(std::move(name), Flag::Kind::kInt64, target, std::move(value_name), std::move(help));
  f.default_text = absl::StrCat(*target);
  return f;
}

FlagSet::Flag& FlagSet::Double(std::string name, double* target, std::string value_name,
                               std::string help) {
  Flag& f =
      Add(std::move(name), Flag::Kind::kDouble, target, std::move(value_name), std::move(help));
  f.default_text = FormatNumber(*target);
  return f;
}

FlagSet::Flag& FlagSet::Bool(std::string name, bool* target, std::string help) {
  return Add(std::move(name), Flag::Kind::kBool, target, "", std::move(help));
}

FlagSet::Flag& FlagSet::Repeated(std::string name, std::vector<std::string>* target,
                                 std::string value_name, std::string help) {
  return Add(std::move(name), Flag::Kind::kRepeated, target, std::move(value_name),
             std::move(help));
}

FlagSet::Flag& FlagSet::Choice(std::string name, std::string* target,
                               std::vector<std::string> choices, std::string help) {
  Flag& f = Add(std::move(name), Flag::Kind::kChoice, target, absl::StrJoin(choices, "|"),
                std::move(help));
  f.choices = std::move(choices);
  f.default_text = *target;
  return f;
}

FlagSet::Flag& FlagSet::Custom(std::string name, std::string value_name, std::string help,
                               std::function<absl::Status(absl::string_view)> parse) {
  Flag& f =
      Add(std::move(name), Flag::Kind::kCustom, nullptr, std::move(value_name), std::move(help));
  f.custom = std::move(parse);
  return f;
}

void FlagSet::Positional(std::string value_name, std::vector<std::string>* target, int min_count,
                         int max_count, std::string help) {
  positional_name_ = std::move(value_name);
  positional_help_ = std::move(help);
  positional_ = target;
  positional_min_ = min_count;
  positional_max_ = max_count;
}

void FlagSet::JobFlags(std::string* config_path, std::vector<std::string>* overrides,
                       bool required) {
  Flag& config =
      String("--config", config_path, "FILE", "the job: a text-format JobConfig (proto/job.proto)");
  if (required) config.Required();
  Repeated("--set", overrides, "path.to.field=value",
           "override a field of the job, in order (repeatable): numbers, true/false, strings, "
           "enum names, lists [1,2]");
}

FlagSet::Flag* FlagSet::Find(absl::string_view name) {
  for (auto& f : flags_) {
    if (f->name == name) return f.get();
    for (const std::string& a : f->aliases) {
      if (a == name) return f.get();
    }
  }
  return nullptr;
}

bool FlagSet::Given(absl::string_view name) const {
  for (const auto& f : flags_) {
    if (f->name == name) return f->seen;
  }
  return false;
}

absl::Status FlagSet::Error(absl::string_view message, bool with_usage) const {
  if (!with_usage) return absl::InvalidArgumentError(message);
  return absl::InvalidArgumentError(absl::StrCat(message, "\n", Usage()));
}

absl::Status FlagSet::Set(Flag& f, const std::string& spelled, const std::string& value) {
  // "--steps expects an integer >= 1, got 'x'": the flag as the user spelled it.
  auto expected = [&](absl::string_view what) {
    std::string bound;
    if (f.positive) {
      bound = " > 0";
    } else if (f.has_least) {
      bound = absl::StrCat(" >= ", FormatNumber(f.least));
    }
    return Error(absl::StrCat(spelled, " expects ", what, bound, ", got ", Quoted(value)), false);
  };
  auto in_range = [&](double v) { return f.positive ? v > 0 : !f.has_least || v >= f.least; };
  switch (f.kind) {
    case Flag::Kind::kString:
      *static_cast<std::string*>(f.target) = value;
      return absl::OkStatus();
    case Flag::Kind::kRepeated:
      static_cast<std::vector<std::string>*>(f.target)->push_back(value);
      return absl::OkStatus();
    case Flag::Kind::kInt: {
      int v = 0;
      if (!absl::SimpleAtoi(value, &v) || !in_range(v)) return expected("an integer");
      *static_cast<int*>(f.target) = v;
      return absl::OkStatus();
    }
    case Flag::Kind::kInt64: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(value, &v) || !in_range(static_cast<double>(v))) {
        return expected("an integer");
      }
      *static_cast<int64_t*>(f.target) = v;
      return absl::OkStatus();
    }
    case Flag::Kind::kDouble: {
      double v = 0;
      if (!absl::SimpleAtod(value, &v) || !std::isfinite(v) || !in_range(v)) {
        return expected("a number");
      }
      *static_cast<double*>(f.target) = v;
      return absl::OkStatus();
    }
    case Flag::Kind::kBool: {
      const std::string v = absl::AsciiStrToLower(value);
      if (v == "true" || v == "1" || v == "yes") {
        *static_cast<bool*>(f.target) = true;
      } else if (v == "false" || v == "0" || v == "no") {
        *static_cast<bool*>(f.target) = false;
      } else {
        return Error(
            absl::StrCat(spelled, " takes no value, or true or false; got ", Quoted(value)), false);
      }
      return absl::OkStatus();
    }
    case Flag::Kind::kChoice: {
      if (std::find(f.choices.begin(), f.choices.end(), value) == f.choices.end()) {
        const std::string options = f.choices.size() == 2
                                        ? absl::StrCat(f.choices[0], " or ", f.choices[1])
                                        : absl::StrCat("one of ", absl::StrJoin(f.choices, ", "));
        return Error(absl::StrCat(spelled, " expects ", options, ", got ", Quoted(value)), false);
      }
      *static_cast<std::string*>(f.target) = value;
      return absl::OkStatus();
    }
    case Flag::Kind::kCustom: {
      absl::Status s = f.custom(value);
      if (!s.ok()) return Error(absl::StrCat(spelled, ": ", s.message()), false);
      return absl::OkStatus();
    }
  }
  return absl::InternalError("FlagSet: unknown flag kind");
}

absl::StatusOr<bool> FlagSet::Parse(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << Usage() << "\n";
      return false;
    }
  }
  // The value a flag given once was first given, to name both when it comes again.
  std::vector<std::string> first_value(flags_.size());
  for (auto& f : flags_) f->seen = false;
  std::vector<std::string> words;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      if (positional_ == nullptr) {
        return Error(absl::StrCat("unexpected argument ", Quoted(arg)), true);
      }
      words.push_back(arg);
      continue;
    }
    std::string spelled = arg, value;
    const size_t eq = arg.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      spelled = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    Flag* f = Find(spelled);
    if (f == nullptr) return Error(absl::StrCat("unknown flag ", Quoted(spelled)), true);
    const size_t index = static_cast<size_t>(
        std::find_if(flags_.begin(), flags_.end(), [&](const auto& p) { return p.get() == f; }) -
        flags_.begin());
    if (f->kind == Flag::Kind::kBool) {
      if (!inline_value) value = "true";
    } else if (!inline_value) {
      if (i + 1 >= args.size()) {
        return Error(absl::StrCat(spelled, " needs a value (", f->value_name, ")"), true);
      }
      value = args[++i];
    }
    const bool once = f->kind != Flag::Kind::kRepeated && f->kind != Flag::Kind::kBool;
    if (once && f->seen) {
      return Error(absl::StrCat(spelled, " is given twice (", Quoted(first_value[index]), " and ",
                                Quoted(value), "); give it once",
                                f->name == "--config" ? ", and change fields with --set" : ""),
                   false);
    }
    first_value[index] = value;
    f->seen = true;
    absl::Status s = Set(*f, spelled, value);
    if (!s.ok()) return s;
    if (f->takes_words && !inline_value) {
      while (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "-")) {
        s = Set(*f, spelled, args[++i]);
        if (!s.ok()) return s;
      }
    }
  }
  for (const auto& f : flags_) {
    if (f->required && !f->seen) {
      return Error(absl::StrCat(f->name, " is required"), true);
    }
  }
  if (positional_ != nullptr) {
    const int n = static_cast<int>(words.size());
    if (n < positional_min_ || n > positional_max_) {
      const std::string expected = positional_min_ == positional_max_
                                       ? absl::StrCat(positional_min_)
                                       : absl::StrCat(positional_min_, " to ", positional_max_);
      return Error(absl::StrCat("expected ", expected, " ", positional_name_, ", got ", n,
                                n == 0 ? "" : absl::StrCat(" (", absl::StrJoin(words, " "), ")")),
                   true);
    }
    *positional_ = std::move(words);
  }
  return true;
}

std::string FlagSet::Usage() const {
  // Synopsis: required flags bare, the rest in brackets, wrapped under the program name.
  std::string out = absl::StrCat("usage: ", program_);
  // Continuation lines align under the first flag, or further left for a long program name.
  const size_t indent = std::min(out.size() + 1, kFlagColumn);
  size_t column = out.size();
  auto add_item = [&](const std::string& item) {
    if (column + 1 + item.size() > kWidth && column > indent) {
      absl::StrAppend(&out, "\n", std::string(indent, ' '), item);
      column = indent + item.size();
    } else {
      absl::StrAppend(&out, " ", item);
      column += 1 + item.size();
    }
  };
  for (const auto& f : flags_) {
    std::string item = f->name;
    if (f->kind != Flag::Kind::kBool) absl::StrAppend(&item, " ", f->value_name);
    if (f->kind == Flag::Kind::kRepeated) absl::StrAppend(&item, " ...");
    add_item(f->required ? item : absl::StrCat("[", item, "]"));
  }
  if (positional_ != nullptr) {
    std::string item = positional_name_;
    if (positional_max_ > 1) absl::StrAppend(&item, "...");
    add_item(positional_min_ > 0 ? item : absl::StrCat("[", item, "]"));
  }
  out += "\n";
  if (!description_.empty()) {
    for (absl::string_view line : absl::StrSplit(description_, '\n')) {
      absl::StrAppend(&out, line.empty() ? "" : "  ", line, "\n");
    }
  }
  // One entry per flag: "  --name V, -a V    help (default D)", the help wrapped in a column.
  auto entry = [&](const std::string& left, const std::string& help) {
    std::string line = absl::StrCat("  ", left);
    if (line.size() + 1 > kFlagColumn) {
      line += "\n";
      line.append(kFlagColumn, ' ');
    } else {
      line.resize(kFlagColumn, ' ');
    }
    std::string wrapped;
    AppendWrapped(&wrapped, kFlagColumn, kFlagColumn, help);
    absl::StrAppend(&out, line, wrapped, "\n");
  };
  if (positional_ != nullptr && !positional_help_.empty())
    entry(positional_name_, positional_help_);
  for (const auto& f : flags_) {
    std::string left = f->name;
    if (f->kind != Flag::Kind::kBool) absl::StrAppend(&left, " ", f->value_name);
    for (const std::string& a : f->aliases) absl::StrAppend(&left, ", ", a);
    std::string help = f->help;
    if (!f->default_text.empty()) absl::StrAppend(&help, " (default ", f->default_text, ")");
    if (f->required) absl::StrAppend(&help, " (required)");
    entry(left, help);
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace loom
