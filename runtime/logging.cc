#include "runtime/logging.h"

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace loom {

namespace {

constexpr int kLevelUnset = -1;

// Configuration read on every message is atomic; the prefix and the sink change rarely and
// are read under the mutex that also serialises writes.
std::atomic<int> g_min_level{kLevelUnset};
std::atomic<int> g_rank{-1};  // -1: SetLogRankInfo not called
std::atomic<bool> g_all_ranks{false};

std::mutex& Mu() {
  static std::mutex* mu = new std::mutex();  // never destroyed: logging may run at exit
  return *mu;
}
std::string g_prefix;            // guarded by Mu()
std::ostream* g_sink = nullptr;  // guarded by Mu(); null means std::cerr

void WriteLine(const std::string& line) {
  std::lock_guard<std::mutex> lock(Mu());
  std::ostream& out = g_sink != nullptr ? *g_sink : std::cerr;
  out << line;
  out.flush();
}

int MinLevel() {
  int level = g_min_level.load(std::memory_order_relaxed);
  if (level != kLevelUnset) return level;
  absl::Status st = LoadLogLevelFromEnv();
  if (!st.ok()) WriteLine(absl::StrCat("W ", st.message(), "; using info\n"));
  return g_min_level.load(std::memory_order_relaxed);
}

const char* Basename(const char* file) {
  const char* base = file;
  for (const char* p = file; *p != '\0'; ++p) {
    if (*p == '/') base = p + 1;
  }
  return base;
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(std::string(text)));
  if (t == "debug" || t == "0") return LogLevel::kDebug;
  if (t == "info" || t == "1") return LogLevel::kInfo;
  if (t == "warning" || t == "warn" || t == "2") return LogLevel::kWarning;
  if (t == "error" || t == "3") return LogLevel::kError;
  return absl::InvalidArgumentError(absl::StrCat(
      "LOOM_LOG_LEVEL: unknown level '", std::string(text),
      "' (expected debug, info, warning, error or 0..3)"));
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}

void SetLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level)); }

LogLevel GetLogLevel() { return static_cast<LogLevel>(MinLevel()); }

absl::Status LoadLogLevelFromEnv() {
  const char* env = std::getenv("LOOM_LOG_LEVEL");
  if (env == nullptr || *env == '\0') {
    SetLogLevel(LogLevel::kInfo);
    return absl::OkStatus();
  }
  absl::StatusOr<LogLevel> level = ParseLogLevel(env);
  SetLogLevel(level.ok() ? *level : LogLevel::kInfo);
  return level.status();
}

void SetLogRankInfo(int rank, int dp, int pp, int tp, int cp) {
  std::lock_guard<std::mutex> lock(Mu());
  g_prefix = cp < 0 ? absl::StrFormat("[r%d dp%d pp%d tp%d]", rank, dp, pp, tp)
                    : absl::StrFormat("[r%d dp%d pp%d tp%d cp%d]", rank, dp, pp, tp, cp);
  g_rank.store(rank);
}

void ClearLogRankInfo() {
  std::lock_guard<std::mutex> lock(Mu());
  g_prefix.clear();
  g_rank.store(-1);
}

std::string LogRankPrefix() {
  std::lock_guard<std::mutex> lock(Mu());
  return g_prefix;
}

void SetLogAllRanks(bool all_ranks) { g_all_ranks.store(all_ranks); }

std::ostream* SetLogSink(std::ostream* sink) {
  std::lock_guard<std::mutex> lock(Mu());
  std::ostream* previous = g_sink;
  g_sink = sink;
  return previous;
}

namespace log_internal {

bool ShouldLog(LogLevel level, bool all_ranks) {
  if (static_cast<int>(level) < MinLevel()) return false;
  if (level >= LogLevel::kWarning || all_ranks || g_all_ranks.load(std::memory_order_relaxed)) {
    return true;
  }
  return g_rank.load(std::memory_order_relaxed) <= 0;  // rank 0, or not set yet
}

LogMessage::LogMessage(LogLevel level, const char* file, int line) {
  static constexpr char kLetters[] = {'D', 'I', 'W', 'E'};
  std::string prefix = LogRankPrefix();
  if (!prefix.empty()) stream_ << prefix << ' ';
  stream_ << kLetters[static_cast<int>(level)] << ' '
          << absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::LocalTimeZone()) << ' '
          << Basename(file) << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  WriteLine(stream_.str());
}

}  // namespace log_internal
}  // namespace loom
