#include "launcher/command.h"

#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

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

absl::Status ParseFlags(const std::vector<std::string>& args, const std::vector<Flag>& flags,
                        const std::string& usage) {
  for (size_t i = 0; i < args.size(); ++i) {
    const Flag* flag = nullptr;
    for (const Flag& f : flags) {
      if (args[i] == f.name) flag = &f;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", args[i], "'\n", usage));
    }
    if (i + 1 >= args.size()) {
      return absl::InvalidArgumentError(absl::StrCat(args[i], " needs a value\n", usage));
    }
    const std::string& value = args[++i];
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
