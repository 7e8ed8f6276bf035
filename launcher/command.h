// Subcommand registry for the `loom` CLI. Each subcommand lives in its own cmd_<name>.cc and
// registers itself with LOOM_REGISTER_COMMAND, so adding one touches no shared file. A command
// receives the arguments after its name and returns a Status; main() prints a failing Status
// and exits non-zero. A command declares its flags in one FlagSet (launcher/flags.h), which
// parses them and writes its `--help`.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "launcher/flags.h"
#include "runtime/status.h"  // LOOM_ASSIGN_OR_RETURN, which every command uses on Parse

namespace loom {

struct Command {
  std::string name;     // e.g. "config check" (words separated by one space)
  std::string summary;  // one line for `loom --help`
  std::function<absl::Status(const std::vector<std::string>& args)> run;
};

std::map<std::string, Command>& CommandRegistry();

struct CommandRegistrar {
  explicit CommandRegistrar(Command c);
};

}  // namespace loom

#define LOOM_REGISTER_COMMAND(ident, ...) \
  static ::loom::CommandRegistrar loom_command_##ident(::loom::Command{__VA_ARGS__})
