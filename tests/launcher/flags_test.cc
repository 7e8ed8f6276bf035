// The flag facility (launcher/flags.h): both spellings of a value, bools, repeated and
// required flags, words, and that every refusal names the flag and what it expected; the usage
// is built from the same declarations. Then every registered command: `--help` prints its
// usage without running anything, and an unknown flag is refused naming it.
#include "launcher/flags.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "launcher/command.h"

namespace loom {
namespace {

#define EXPECT_CONTAINS(text, part) \
  EXPECT_TRUE(absl::StrContains(text, part)) << "'" << (text) << "' lacks '" << (part) << "'"

struct Options {
  std::string name = "tiny";
  int steps = 10;
  int64_t tokens = 100;
  double lr = 0.5;
  bool overwrite = false;
  std::string mode;
  std::vector<std::string> sets;
};

// A FlagSet over `o` with one flag of each kind.
void Declare(FlagSet& f, Options* o) {
  f.String("--name", &o->name, "NAME", "what to call it");
  f.Int("--steps", &o->steps, "N", "steps to run").AtLeast(1).Alias("-n");
  f.Int64("--tokens", &o->tokens, "T", "tokens per shard");
  f.Double("--lr", &o->lr, "LR", "learning rate").Positive();
  f.Bool("--overwrite", &o->overwrite, "replace what is there");
  f.Choice("--mode", &o->mode, {"weak", "strong"}, "how the batch grows").Required();
  f.Repeated("--set", &o->sets, "path=value", "override a field (repeatable)");
}

absl::Status ParseInto(const std::vector<std::string>& args, Options* o) {
  FlagSet f("loom demo", "A demonstration.");
  Declare(f, o);
  auto run = f.Parse(args);
  if (!run.ok()) return run.status();
  EXPECT_TRUE(*run);
  return absl::OkStatus();
}

std::string ErrorOf(const std::vector<std::string>& args) {
  Options o;
  absl::Status s = ParseInto(args, &o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  return std::string(s.message());
}

TEST(FlagsTest, BothSpellingsOfEveryKind) {
  Options o;
  ASSERT_TRUE(ParseInto({"--name", "big", "--steps=7", "--tokens", "12345678901", "--lr=1e-3",
                         "--overwrite", "--mode", "strong", "--set", "a.b=1", "--set=c.d=x=y"},
                        &o)
                  .ok());
  EXPECT_EQ(o.name, "big");
  EXPECT_EQ(o.steps, 7);
  EXPECT_EQ(o.tokens, 12345678901);
  EXPECT_DOUBLE_EQ(o.lr, 1e-3);
  EXPECT_TRUE(o.overwrite);
  EXPECT_EQ(o.mode, "strong");
  // Repeated, in order; only the first '=' splits the flag from its value.
  EXPECT_EQ(o.sets, (std::vector<std::string>{"a.b=1", "c.d=x=y"}));
}

TEST(FlagsTest, AbsentFlagsKeepTheirDefaultsAndAliasesWork) {
  Options o;
  ASSERT_TRUE(ParseInto({"--mode=weak", "-n", "3"}, &o).ok());
  EXPECT_EQ(o.name, "tiny");
  EXPECT_EQ(o.steps, 3);
  EXPECT_EQ(o.tokens, 100);
  EXPECT_FALSE(o.overwrite);
  EXPECT_TRUE(o.sets.empty());
  // A value may start with '-' (a negative number, another program's flags).
  ASSERT_TRUE(ParseInto({"--mode=weak", "--name", "--odd"}, &o).ok());
  EXPECT_EQ(o.name, "--odd");
}

TEST(FlagsTest, BoolTakesAnOptionalTrueOrFalse) {
  Options o;
  ASSERT_TRUE(ParseInto({"--mode=weak", "--overwrite=false"}, &o).ok());
  EXPECT_FALSE(o.overwrite);
  ASSERT_TRUE(ParseInto({"--mode=weak", "--overwrite=true"}, &o).ok());
  EXPECT_TRUE(o.overwrite);
  // A bool does not take the next word as its value.
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--overwrite", "yes"}), "unexpected argument 'yes'");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--overwrite=maybe"}),
                  "--overwrite takes no value, or true or false; got 'maybe'");
}

TEST(FlagsTest, RefusalsNameTheFlagAndWhatItExpected) {
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--stepz", "3"}), "unknown flag '--stepz'");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--steps"}), "--steps needs a value (N)");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--steps", "many"}),
                  "--steps expects an integer >= 1, got 'many'");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "-n", "0"}), "-n expects an integer >= 1, got '0'");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--steps", "3.5"}), "--steps expects an integer");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--tokens", "1e3"}), "--tokens expects an integer");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--lr", "0"}), "--lr expects a number > 0, got '0'");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--lr", "inf"}), "--lr expects a number > 0");
  EXPECT_CONTAINS(ErrorOf({"--mode", "medium"}), "--mode expects weak or strong, got 'medium'");
  EXPECT_CONTAINS(ErrorOf({"--steps", "3"}), "--mode is required");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "stray"}), "unexpected argument 'stray'");
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--steps", "3", "--steps=4"}),
                  "--steps is given twice ('3' and '4'); give it once");
  // An unknown flag or a missing requirement comes with the usage, so the user sees the set.
  EXPECT_CONTAINS(ErrorOf({"--mode=weak", "--stepz", "3"}), "usage: loom demo");
  EXPECT_CONTAINS(ErrorOf({}), "usage: loom demo");
}

TEST(FlagsTest, ChoiceOfMoreThanTwoListsThem) {
  std::string op = "all";
  FlagSet f("loom x", "");
  f.Choice("--op", &op, {"a", "b", "all"}, "which");
  auto run = f.Parse({"--op", "c"});
  ASSERT_FALSE(run.ok());
  EXPECT_CONTAINS(std::string(run.status().message()), "--op expects one of a, b, all, got 'c'");
}

TEST(FlagsTest, CustomFlagErrorsArePrefixedWithTheFlag) {
  std::vector<int> ranks;
  FlagSet f("loom x", "");
  f.Custom("--ranks", "1,2", "rank counts", [&](absl::string_view v) -> absl::Status {
    if (v != "1,2") return absl::InvalidArgumentError("expects 1,2");
    ranks = {1, 2};
    return absl::OkStatus();
  });
  ASSERT_TRUE(f.Parse({"--ranks=1,2"}).ok());
  EXPECT_EQ(ranks, (std::vector<int>{1, 2}));
  EXPECT_TRUE(f.Given("--ranks"));
  auto bad = f.Parse({"--ranks", "3"});
  ASSERT_FALSE(bad.ok());
  EXPECT_CONTAINS(std::string(bad.status().message()), "--ranks: expects 1,2");
}

TEST(FlagsTest, PositionalWordsAndWordTakingFlags) {
  std::vector<std::string> dirs, inputs;
  std::string out;
  FlagSet f("loom x", "");
  f.Repeated("--input", &inputs, "PATH", "inputs").TakesWords();
  f.String("--out", &out, "DIR", "output");
  f.Positional("DIR", &dirs, 1, 1, "a directory");
  ASSERT_TRUE(f.Parse({"--input", "a", "b", "--out", "o", "d", "--input=c"}).ok());
  // 'd' follows --out's value, so it is the positional word, not an input.
  EXPECT_EQ(inputs, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(dirs, (std::vector<std::string>{"d"}));
  auto none = f.Parse({"--out", "o"});
  ASSERT_FALSE(none.ok());
  EXPECT_CONTAINS(std::string(none.status().message()), "expected 1 DIR, got 0");
}

TEST(FlagsTest, JobFlagsTakeOneConfigAndSetsInOrder) {
  std::string path;
  std::vector<std::string> sets;
  int steps = 1;
  FlagSet f("loom x", "");
  f.JobFlags(&path, &sets);
  f.Int("--steps", &steps, "N", "steps");
  ASSERT_TRUE(f.Parse({"--config", "a.textproto", "--set", "model.layers=2", "--steps", "3",
                       "--set=optimizer.lr=1e-3"})
                  .ok());
  EXPECT_EQ(path, "a.textproto");
  EXPECT_EQ(sets, (std::vector<std::string>{"model.layers=2", "optimizer.lr=1e-3"}));
  EXPECT_EQ(steps, 3);
  auto twice = f.Parse({"--config", "a.textproto", "--config=b.textproto"});
  ASSERT_FALSE(twice.ok());
  EXPECT_CONTAINS(std::string(twice.status().message()),
                  "--config is given twice ('a.textproto' and 'b.textproto'); give it once, and "
                  "change fields with --set");
  auto dangling = f.Parse({"--config", "a", "--set"});
  ASSERT_FALSE(dangling.ok());
  EXPECT_CONTAINS(std::string(dangling.status().message()),
                  "--set needs a value (path.to.field=value)");
  auto missing = f.Parse({"--set", "a.b=1"});
  ASSERT_FALSE(missing.ok());
  EXPECT_CONTAINS(std::string(missing.status().message()), "--config is required");
}

TEST(FlagsTest, HelpPrintsTheUsageAndDoesNotRun) {
  Options o;
  FlagSet f("loom demo", "A demonstration.");
  Declare(f, &o);
  ::testing::internal::CaptureStdout();
  // Even beside a bad flag: the user asked for help.
  auto run = f.Parse({"--stepz", "--help"});
  const std::string printed = ::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE(*run);
  EXPECT_EQ(printed, f.Usage() + "\n");
}

TEST(FlagsTest, UsageComesFromTheDeclarations) {
  Options o;
  o.name = "a-rather-long-default-name";
  FlagSet f("loom demo", "A demonstration.\nSecond line.");
  Declare(f, &o);
  const std::string usage = f.Usage();
  // Synopsis: required flags bare, optional ones in brackets, repeated ones with '...'.
  EXPECT_CONTAINS(usage, "usage: loom demo [--name NAME] [--steps N]");
  EXPECT_CONTAINS(usage, " --mode weak|strong ");
  EXPECT_CONTAINS(usage, "[--set path=value ...]");
  EXPECT_CONTAINS(usage, "\n  A demonstration.\n  Second line.\n");
  // One entry per flag, with its help, aliases and the default its target held.
  EXPECT_CONTAINS(usage, "  --steps N, -n         steps to run (default 10)");
  EXPECT_CONTAINS(usage, "what to call it (default a-rather-long-default-name)");
  EXPECT_CONTAINS(usage, "learning rate (default 0.5)");
  EXPECT_CONTAINS(usage, "how the batch grows (required)");
  EXPECT_FALSE(absl::StrContains(usage, "replace what is there (default"));
  for (absl::string_view line : absl::StrSplit(usage, '\n')) {
    EXPECT_LE(line.size(), 100u) << line;
  }
}

// Every command: --help prints a usage naming it and runs nothing; an unknown flag is refused
// naming the flag. (A command that parsed its own arguments would pass neither check.)
TEST(CommandFlagsTest, EveryCommandHasAFlagSet) {
  ASSERT_GE(CommandRegistry().size(), 10u);
  for (const auto& [name, command] : CommandRegistry()) {
    ::testing::internal::CaptureStdout();
    absl::Status help = command.run({"--help"});
    const std::string printed = ::testing::internal::GetCapturedStdout();
    EXPECT_TRUE(help.ok()) << name << ": " << help;
    EXPECT_TRUE(absl::StartsWith(printed, "usage: ")) << name << ": " << printed;
    EXPECT_CONTAINS(printed, "loom " + name);
    for (absl::string_view line : absl::StrSplit(printed, '\n')) {
      EXPECT_LE(line.size(), 100u) << name << ": " << line;
    }
    absl::Status bad = command.run({"--no-such-flag"});
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << name << ": " << bad;
    EXPECT_CONTAINS(std::string(bad.message()), "unknown flag '--no-such-flag'");
  }
}

}  // namespace
}  // namespace loom
