// FlagSet: the one declaration of a command's flags (name, type, target, help) from which both
// the parsing of its arguments and its usage text come, so the two cannot drift apart.
//
// A command declares each flag once, pointing it at the variable it fills; the variable's value
// at declaration is the default the usage shows. Parse() then accepts, for a flag taking a
// value, '--name value' and '--name=value'; for a bool flag '--name' (and '--name=true|false');
// a repeated flag (such as --set) may be given any number of times and appends each value.
// Everything Parse refuses is InvalidArgument naming the argument and what was expected: an
// unknown flag, a missing value, a value of the wrong type or out of range, a flag given twice
// that may be given once, a required flag that is absent, a stray word. Usage() is the text for
// `loom <command> --help`: the synopsis built from the flags, the command's description, and one
// line (wrapped) per flag with its help and default.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loom {

class FlagSet {
 public:
  // One declared flag; the setters refine it and return it, so declarations chain:
  //   flags.Int("--steps", &steps, "N", "training steps per point").AtLeast(1);
  class Flag {
   public:
    // Another spelling accepted for the same flag (e.g. "-n" for "--iters").
    Flag& Alias(std::string alias);
    // Parse refuses the command without it ("--config is required").
    Flag& Required();
    // Numbers: the smallest value accepted.
    Flag& AtLeast(double least);
    // Numbers: values must be > 0.
    Flag& Positive();
    // The default shown in the usage instead of the target's value at declaration (empty: none).
    Flag& DefaultText(std::string text);
    // A repeated flag: '--name a b c' also takes the words that follow, up to the next flag.
    Flag& TakesWords();

   private:
    friend class FlagSet;
    enum class Kind { kString, kInt, kInt64, kDouble, kBool, kRepeated, kChoice, kCustom };
    std::string name, value_name, help, default_text;
    std::vector<std::string> aliases;
    Kind kind = Kind::kString;
    bool required = false, takes_words = false, seen = false;
    double least = 0;
    bool has_least = false, positive = false;
    std::vector<std::string> choices;
    void* target = nullptr;
    std::function<absl::Status(absl::string_view)> custom;
  };

  // `program` heads the synopsis ("loom plan", "mpirun -np N loom bench comm"); `description`
  // is the prose under it (lines are indented by two spaces; write without the indent).
  FlagSet(std::string program, std::string description);
  FlagSet(const FlagSet&) = delete;
  FlagSet& operator=(const FlagSet&) = delete;

  // Each takes the flag's name ("--steps"), its target, the word for its value in the usage
  // ("N") and a one-line help (wrapped in the usage).
  Flag& String(std::string name, std::string* target, std::string value_name, std::string help);
  Flag& Int(std::string name, int* target, std::string value_name, std::string help);
  Flag& Int64(std::string name, int64_t* target, std::string value_name, std::string help);
  Flag& Double(std::string name, double* target, std::string value_name, std::string help);
  Flag& Bool(std::string name, bool* target, std::string help);
  // Given any number of times, each value appended.
  Flag& Repeated(std::string name, std::vector<std::string>* target, std::string value_name,
                 std::string help);
  // One of `choices`; the synopsis shows them as a|b|c.
  Flag& Choice(std::string name, std::string* target, std::vector<std::string> choices,
               std::string help);
  // A value parsed by `parse`, whose error message is prefixed with the flag's name.
  Flag& Custom(std::string name, std::string value_name, std::string help,
               std::function<absl::Status(absl::string_view value)> parse);
  // Words that are not flags, in order (e.g. a directory). Without a positional declared, a
  // word that is not a flag is refused.
  void Positional(std::string value_name, std::vector<std::string>* target, int min_count,
                  int max_count, std::string help);

  // The job flags every job-driven command shares: --config FILE (once; required unless
  // `required` is false) and --set path.to.field=value (repeated).
  void JobFlags(std::string* config_path, std::vector<std::string>* overrides,
                bool required = true);

  // Parses args into the targets. Returns false after printing Usage() to stdout when args ask
  // for help (--help or -h anywhere), true when the command should run.
  absl::StatusOr<bool> Parse(const std::vector<std::string>& args);
  // Whether the flag (by its name) was given on the command line by the last Parse.
  bool Given(absl::string_view name) const;

  std::string Usage() const;
  const std::string& program() const { return program_; }

 private:
  Flag& Add(std::string name, Flag::Kind kind, void* target, std::string value_name,
            std::string help);
  Flag* Find(absl::string_view name);
  absl::Status Set(Flag& flag, const std::string& spelled, const std::string& value);
  absl::Status Error(absl::string_view message, bool with_usage) const;

  std::string program_, description_;
  std::vector<std::unique_ptr<Flag>> flags_;
  std::string positional_name_, positional_help_;
  std::vector<std::string>* positional_ = nullptr;
  int positional_min_ = 0, positional_max_ = 0;
};

}  // namespace loom
