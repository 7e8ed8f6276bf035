#include "launcher/command.h"

#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace loom {

std::map<std::string, Command>& CommandRegistry() {
  static auto* registry = new std::map<std::string, Command>();
  return *registry;
}

CommandRegistrar::CommandRegistrar(Command c) { CommandRegistry()[c.name] = std::move(c); }

bool WantsHelp(const std::vector<std::string>& args, const std::string& usage) {
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << usage << "\n";
      return true;
    }
  }
  return false;
}

absl::Status TakeFlag(const std::vector<std::string>& args, size_t* i, std::string* name,
                      std::string* value, const std::string& usage) {
  *name = args[*i];
  const size_t eq = name->find('=');
  if (eq != std::string::npos) {
    *value = name->substr(eq + 1);
    name->resize(eq);
  } else if (*i + 1 < args.size()) {
    *value = args[++*i];
  } else {
    return absl::InvalidArgumentError(absl::StrCat(*name, " needs a value\n", usage));
  }
  return absl::OkStatus();
}

absl::Status ParseFlags(const std::vector<std::string>& args, const std::vector<Flag>& flags,
                        const std::string& usage) {
  for (size_t i = 0; i < args.size(); ++i) {
    const Flag* flag = nullptr;
    const std::string arg = args[i];
    std::string name, value;
    for (const Flag& f : flags) {
      if (arg == f.name || arg.rfind(std::string(f.name) + "=", 0) == 0) flag = &f;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", arg, "'\n", usage));
    }
    LOOM_RETURN_IF_ERROR(TakeFlag(args, &i, &name, &value, usage));
    if (flag->int_value != nullptr) {
      if (!absl::SimpleAtoi(value, flag->int_value) || *flag->int_value < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            flag->name, " takes a non-negative integer, got '", value, "'\n", usage));
      }
    } else if (flag->string_value != nullptr) {
      *flag->string_value = value;
    }
  }
  return absl::OkStatus();
}

}  // namespace loom
