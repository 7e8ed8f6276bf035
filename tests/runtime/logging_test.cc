#include "runtime/logging.h"

#include <stdlib.h>

#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace loom {
namespace {

// Captures log lines in a string stream and puts the global settings back afterwards.
class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_sink_ = SetLogSink(&out_);
    ClearLogRankInfo();
    SetLogAllRanks(false);
    SetLogLevel(LogLevel::kInfo);
  }
  void TearDown() override {
    SetLogSink(previous_sink_);
    ClearLogRankInfo();
    SetLogAllRanks(false);
    SetLogLevel(LogLevel::kInfo);
  }
  std::vector<std::string> Lines() {
    std::vector<std::string> lines;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  std::ostringstream out_;
  std::ostream* previous_sink_ = nullptr;
};

TEST_F(LoggingTest, LineFormatWithoutRankInfo) {
  LOOM_LOG(INFO) << "hello " << 42;
  ASSERT_EQ(Lines().size(), 1u);
  EXPECT_TRUE(std::regex_match(
      Lines()[0], std::regex(R"(I \d\d:\d\d:\d\d\.\d\d\d logging_test\.cc:\d+\] hello 42)")))
      << Lines()[0];
  EXPECT_EQ(LogRankPrefix(), "");
}

TEST_F(LoggingTest, RankPrefixAndRankZeroInfo) {
  SetLogRankInfo(0, 0, 0, 0);
  LOOM_LOG(INFO) << "from rank 0";
  SetLogRankInfo(3, 1, 0, 1);
  EXPECT_EQ(LogRankPrefix(), "[r3 dp1 pp0 tp1]");
  LOOM_LOG(INFO) << "hidden: info from rank 3";
  LOOM_LOG(DEBUG) << "hidden: debug";
  LOOM_LOG(WARNING) << "warned";
  LOOM_LOG(ERROR) << "failed";
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u) << out_.str();
  EXPECT_EQ(lines[0].rfind("[r0 dp0 pp0 tp0] I ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("[r3 dp1 pp0 tp1] W ", 0), 0u) << lines[1];
  EXPECT_NE(lines[1].find("] warned"), std::string::npos);
  EXPECT_EQ(lines[2].rfind("[r3 dp1 pp0 tp1] E ", 0), 0u) << lines[2];
}

TEST_F(LoggingTest, AllRanksSwitches) {
  SetLogRankInfo(5, 1, 1, 1);
  LOOM_LOG_ALL_RANKS(INFO) << "one";
  LOOM_LOG(INFO) << "hidden";
  SetLogAllRanks(true);
  LOOM_LOG(INFO) << "two";
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u) << out_.str();
  EXPECT_NE(lines[0].find("] one"), std::string::npos);
  EXPECT_NE(lines[1].find("] two"), std::string::npos);
}

TEST_F(LoggingTest, LevelFilterAndNoEvaluationWhenFiltered) {
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  LOOM_LOG(DEBUG) << count();  // below the default INFO
  EXPECT_EQ(evaluated, 0);
  SetLogLevel(LogLevel::kDebug);
  LOOM_LOG(DEBUG) << "debug " << count();
  EXPECT_EQ(evaluated, 1);
  SetLogLevel(LogLevel::kError);
  LOOM_LOG(WARNING) << count();
  LOOM_LOG(ERROR) << "error " << count();
  EXPECT_EQ(evaluated, 2);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u) << out_.str();
  EXPECT_EQ(lines[0].rfind("D ", 0), 0u);
  EXPECT_EQ(lines[1].rfind("E ", 0), 0u);
}

TEST_F(LoggingTest, MacroIsOneStatement) {
  bool flag = false;
  if (flag)
    LOOM_LOG(INFO) << "not this";
  else
    LOOM_LOG(INFO) << "this";
  ASSERT_EQ(Lines().size(), 1u);
  EXPECT_NE(Lines()[0].find("] this"), std::string::npos);
}

TEST_F(LoggingTest, ParseLogLevel) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel(" INFO "), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("Warn"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("3"), LogLevel::kError);
  auto bad = ParseLogLevel("verbose");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("LOOM_LOG_LEVEL"), absl::string_view::npos);
  EXPECT_NE(bad.status().message().find("'verbose'"), absl::string_view::npos);
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    EXPECT_EQ(*ParseLogLevel(LogLevelName(l)), l);
  }
}

TEST_F(LoggingTest, LevelFromEnvironment) {
  ASSERT_EQ(::setenv("LOOM_LOG_LEVEL", "warning", 1), 0);
  EXPECT_TRUE(LoadLogLevelFromEnv().ok());
  EXPECT_EQ(GetLogLevel(), LogLevel::kWarning);
  ASSERT_EQ(::setenv("LOOM_LOG_LEVEL", "loud", 1), 0);
  EXPECT_FALSE(LoadLogLevelFromEnv().ok());
  EXPECT_EQ(GetLogLevel(), LogLevel::kInfo);
  ASSERT_EQ(::unsetenv("LOOM_LOG_LEVEL"), 0);
  SetLogLevel(LogLevel::kError);
  EXPECT_TRUE(LoadLogLevelFromEnv().ok());
  EXPECT_EQ(GetLogLevel(), LogLevel::kInfo);
}

TEST_F(LoggingTest, ConcurrentMessagesStayWholeLines) {
  const int kThreads = 8, kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kPerThread; ++i) {
        LOOM_LOG(INFO) << "thread " << t << " message " << i << " end";
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kPerThread));
  std::regex whole(R"(I \S+ logging_test\.cc:\d+\] thread \d message \d+ end)");
  for (const std::string& line : lines) ASSERT_TRUE(std::regex_match(line, whole)) << line;
}

}  // namespace
}  // namespace loom
