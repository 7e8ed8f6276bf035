// `loom`: the command-line entry point. Finds the longest registered command name that
// matches the leading words (so "config check" wins over "config"), runs it, and turns its
// Status into an exit code. This is the only place a Status becomes an exit code.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "launcher/command.h"

namespace {

void PrintHelp() {
  std::cout << "loom: GPT-style pretraining across a GPU cluster (CPU backend included).\n\n"
               "usage: loom <command> [options]    (loom <command> --help for details)\n\n"
               "commands:\n";
  for (const auto& [name, cmd] : loom::CommandRegistry()) {
    std::string padded = name;
    padded.resize(std::max<size_t>(padded.size(), 18), ' ');
    std::cout << "  " << padded << "  " << cmd.summary << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    PrintHelp();
    return args.empty() ? 1 : 0;
  }
  const auto& registry = loom::CommandRegistry();
  const loom::Command* best = nullptr;
  size_t best_words = 0;
  for (size_t words = 1; words <= std::min<size_t>(3, args.size()); ++words) {
    std::string name = args[0];
    for (size_t i = 1; i < words; ++i) name += " " + args[i];
    auto it = registry.find(name);
    if (it != registry.end()) {
      best = &it->second;
      best_words = words;
    }
  }
  if (best == nullptr) {
    std::cerr << "loom: unknown command '" << args[0] << "'\n\n";
    PrintHelp();
    return 2;
  }
  std::vector<std::string> rest(args.begin() + best_words, args.end());
  absl::Status status = best->run(rest);
  if (!status.ok()) {
    // One write: under mpirun the ranks share stderr, and pieces written separately interleave.
    const std::string line =
        absl::StrCat("loom ", best->name, ": error: ", status.message(), "\n");
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
