// Logging for many ranks: one line per message, whole lines only (thread-safe), a rank prefix
// once the launcher knows the grid, and no flood of identical INFO lines from every rank.
//
//   LOOM_LOG(INFO) << "step " << step << " loss " << loss;
//   LOOM_LOG(WARNING) << "vocab padded from " << v << " to " << padded;
//   LOOM_LOG_ALL_RANKS(INFO) << "rank-local memory: " << bytes;
//
// Line format: "[r3 dp1 pp0 tp1] I 12:34:56.789 trainer.cc:42] message". Before
// SetLogRankInfo() is called (single process, tools, tests) there is no prefix and every
// message passes the rank filter.
//
// Which messages print:
//   - level >= the minimum level (LOOM_LOG_LEVEL=debug|info|warning|error or 0..3 in the
//     environment, read at the first message; INFO by default; SetLogLevel overrides);
//   - DEBUG and INFO only on rank 0 unless SetLogAllRanks(true); WARNING and ERROR on every
//     rank, since a problem on rank 5 is seen nowhere else.
// The stream expression is not evaluated when the message is filtered out.
#pragma once

#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace loom {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning" (or "warn"), "error", any case, or "0".."3".
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text);
std::string_view LogLevelName(LogLevel level);

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Sets the level from LOOM_LOG_LEVEL (INFO when unset). An invalid value keeps INFO and
// returns the error (the first automatic read prints it as a warning instead).
absl::Status LoadLogLevelFromEnv();

// Called once by the launcher after the grid is built.
// cp >= 0 adds " cp<k>" (context-parallel jobs; -1, the default, leaves it out).
void SetLogRankInfo(int rank, int dp, int pp, int tp, int cp = -1);
// Back to "not set": no prefix, all ranks print. For tests and tools.
void ClearLogRankInfo();
// The current prefix ("" when unset), e.g. "[r3 dp1 pp0 tp1]".
std::string LogRankPrefix();
// INFO/DEBUG from every rank instead of rank 0 only.
void SetLogAllRanks(bool all_ranks);

// Where lines go (std::cerr when null, the default). The stream must outlive its use; the
// previous sink is returned so tests can restore it.
std::ostream* SetLogSink(std::ostream* sink);

namespace log_internal {

inline constexpr LogLevel kLevelDEBUG = LogLevel::kDebug;
inline constexpr LogLevel kLevelINFO = LogLevel::kInfo;
inline constexpr LogLevel kLevelWARNING = LogLevel::kWarning;
inline constexpr LogLevel kLevelERROR = LogLevel::kError;

// Whether a message at `level` prints on this rank (all_ranks: skip the rank-0 rule).
bool ShouldLog(LogLevel level, bool all_ranks);

// Collects one message; the destructor writes the whole line to the sink under a lock.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace log_internal
}  // namespace loom

// `severity` is DEBUG, INFO, WARNING or ERROR. The for-statement runs the body at most once and
// is a single statement, so `if (x) LOOM_LOG(INFO) << ...; else ...` binds as it reads.
#define LOOM_LOG_IMPL(severity, all_ranks)                                                   \
  for (bool loom_log_on_ =                                                                   \
           ::loom::log_internal::ShouldLog(::loom::log_internal::kLevel##severity, all_ranks); \
       loom_log_on_; loom_log_on_ = false)                                                   \
  ::loom::log_internal::LogMessage(::loom::log_internal::kLevel##severity, __FILE__, __LINE__) \
      .stream()

#define LOOM_LOG(severity) LOOM_LOG_IMPL(severity, false)
#define LOOM_LOG_ALL_RANKS(severity) LOOM_LOG_IMPL(severity, true)
