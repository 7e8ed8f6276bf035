// Subcommand registry for the `loom` CLI. Each subcommand lives in its own cmd_<name>.cc and
// registers itself with LOOM_REGISTER_COMMAND, so adding one touches no shared file. A command
// receives the arguments after its name and returns a Status; main() prints a failing Status
// and exits non-zero.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace loom {

struct Command {
  std::string name;     // e.g. "config check" (words separated by one space)
  std::string summary;  // one line for `loom --help`
  std::string usage;    // full help for `loom <name> --help`
  std::function<absl::Status(const std::vector<std::string>& args)> run;
};

std::map<std::string, Command>& CommandRegistry();

struct CommandRegistrar {
  explicit CommandRegistrar(Command c);
};

// Prints `usage` and returns true when args contain --help / -h.
bool WantsHelp(const std::vector<std::string>& args, const std::string& usage);

// Reads the flag at args[*i] as "--name value" or "--name=value" into name and value and
// moves *i to its last word. A flag without a value is InvalidArgument naming it, with `usage`.
absl::Status TakeFlag(const std::vector<std::string>& args, size_t* i, std::string* name,
                      std::string* value, const std::string& usage);

// A "--name VALUE" (or "--name=VALUE") flag: a non-negative integer or a string.
struct Flag {
  const char* name;
  int* int_value = nullptr;
  std::string* string_value = nullptr;
};
// Parses args made only of the given flags (each followed by its value). An unknown flag, a
// missing value or a bad integer is InvalidArgument naming the argument, with `usage`.
absl::Status ParseFlags(const std::vector<std::string>& args, const std::vector<Flag>& flags,
                        const std::string& usage);

}  // namespace loom

#define LOOM_REGISTER_COMMAND(ident, ...) \
  static ::loom::CommandRegistrar loom_command_##ident(::loom::Command{__VA_ARGS__})
