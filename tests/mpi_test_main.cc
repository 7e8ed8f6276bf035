// main() of every multi-rank GoogleTest binary (loom_add_mpi_test links it; the test files have
// none). It promises:
// - MPI is started through World before the tests run; a failure to start is printed and fails.
// - Rank 0 prints GoogleTest's report. Every other rank prints only its own failures, each line
//   prefixed with "[rank r]", so a failure on any rank is seen once, with where it happened.
// - The exit code is the worst over the ranks: a failure on any rank fails the run everywhere.
// - A deadline: collectives time out after LOOM_TEST_COLLECTIVE_TIMEOUT_S (default 120 s; a test
//   may set its own), so a rank that failed an assertion and left its peers waiting turns into
//   an error; and past LOOM_TEST_DEADLINE_S of wall time (cmake passes the ctest timeout less a
//   margin) each rank prints the test it is in and exits 124, which ends the job, so a hang says
//   where it hangs instead of being killed silently by ctest.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "parallel/world.h"

namespace {

double EnvSeconds(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  return end != v && s > 0 ? s : fallback;
}

// The test each rank is in, for the deadline's message.
std::mutex current_mu;
std::string current_test = "(before the first test)";

class CurrentTest : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& t) override {
    std::lock_guard<std::mutex> lock(current_mu);
    current_test = std::string(t.test_suite_name()) + "." + t.name();
  }
  void OnTestEnd(const ::testing::TestInfo& t) override {
    std::lock_guard<std::mutex> lock(current_mu);
    current_test = std::string("(after ") + t.test_suite_name() + "." + t.name() + ")";
  }
};

// The printer of ranks other than 0: their failures only, each line naming the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::string text = std::string("[rank ") + std::to_string(rank_) + "] " +
                       (r.file_name() ? r.file_name() : "?") + ":" +
                       std::to_string(r.line_number()) + ": Failure\n";
    for (const char* p = r.message(); *p != '\0';) {
      const char* nl = std::strchr(p, '\n');
      const size_t n = nl ? static_cast<size_t>(nl - p) : std::strlen(p);
      text += "[rank " + std::to_string(rank_) + "]   " + std::string(p, n) + "\n";
      p += n + (nl ? 1 : 0);
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  void OnTestEnd(const ::testing::TestInfo& t) override {
    if (!t.result()->Failed()) return;
    std::printf("[rank %d] [  FAILED  ] %s.%s\n", rank_, t.test_suite_name(), t.name());
    std::fflush(stdout);
  }

 private:
  int rank_;
};

// Aborts the job, naming the test, when the binary runs past its deadline.
class Deadline {
 public:
  Deadline(double seconds, int rank) {
    thread_ = std::thread([this, seconds, rank] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return done_; })) {
        return;
      }
      std::string test;
      {
        std::lock_guard<std::mutex> current(current_mu);
        test = current_test;
      }
      std::fprintf(stderr,
                   "[rank %d] DEADLINE: the tests ran past %.0f s (LOOM_TEST_DEADLINE_S), in %s; "
                   "aborting the job\n",
                   rank, seconds, test.c_str());
      std::fflush(stderr);
      std::fflush(stdout);
      // Not MPI_Abort: MPI runs serialized and the main thread may be inside a call. A rank
      // that exits without finalizing makes mpirun end the others.
      std::_Exit(124);
    });
  }
  ~Deadline() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = loom::World::Get();
  if (!world.ok()) {
    std::fprintf(stderr, "mpi_test_main: cannot start MPI: %s\n",
                 std::string(world.status().message()).c_str());
    return 1;
  }
  const int rank = (*world)->rank();
  (*world)->state()->timeout = absl::Seconds(EnvSeconds("LOOM_TEST_COLLECTIVE_TIMEOUT_S", 120));
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  listeners.Append(new CurrentTest);
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  int rc = 0;
  {
    Deadline deadline(EnvSeconds("LOOM_TEST_DEADLINE_S", 280), rank);
    rc = RUN_ALL_TESTS();
  }
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && worst != rc) {
    std::printf("another rank failed (see its [rank r] lines above): exit %d\n", worst);
  }
  return worst;
}
