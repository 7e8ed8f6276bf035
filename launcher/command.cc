#include "launcher/command.h"

#include <iostream>

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

}  // namespace loom
