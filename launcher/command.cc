#include "launcher/command.h"

namespace loom {

std::map<std::string, Command>& CommandRegistry() {
  static auto* registry = new std::map<std::string, Command>();
  return *registry;
}

CommandRegistrar::CommandRegistrar(Command c) { CommandRegistry()[c.name] = std::move(c); }

}  // namespace loom
