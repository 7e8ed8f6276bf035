// The watchdog's roll call (World::TakeRollCall, World::AnswerRollCalls): when a wait passes its
// deadline, the rank that saw it asks every other rank where it is before ending the job, so the
// message can name the ranks that did not arrive. A rank answers from inside its own host waits
// (CommState::on_long_wait; on a test device also the host's waits on device work) or while it
// takes a roll call itself; a rank stalled in compute, dead or hung outside MPI cannot answer,
// which is exactly what the roll call wants to find out. Other threads may be inside MPI
// meanwhile (the test device's stream workers), so every call here holds MpiCallMutex().
#include <mpi.h>

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/mpi_backend.h"
#include "parallel/world.h"

namespace loom {

namespace {

constexpr int kRollCallTag = 7101;  // "where are you?" (no payload that matters)
constexpr int kAnswerTag = 7102;    // "step 3: all_reduce(sum) of ... on dp [0,1]"

// Send buffers of answers and calls: the job is about to end, so they are never freed (an
// MPI_Isend buffer must outlive the send, which may never complete if the peer is dead).
std::deque<std::string>& Outbox() {
  static auto* box = new std::deque<std::string>();
  return *box;
}

void SendText(MPI_Comm comm, int to, int tag, std::string text) {
  std::lock_guard<std::mutex> lock(MpiCallMutex());
  std::string& buf = Outbox().emplace_back(std::move(text));
  MPI_Request req;
  if (MPI_Isend(buf.data(), static_cast<int>(buf.size()), MPI_CHAR, to, tag, comm, &req) ==
      MPI_SUCCESS) {
    MPI_Request_free(&req);
  }
}

}  // namespace

void World::AnswerRollCalls(const std::string& what) const {
  if (!watch_) return;
  for (;;) {
    int pending = 0;
    MPI_Status st;
    {
      std::lock_guard<std::mutex> lock(MpiCallMutex());
      if (MPI_Iprobe(MPI_ANY_SOURCE, kRollCallTag, watch_->comm, &pending, &st) != MPI_SUCCESS ||
          !pending) {
        return;
      }
      char dummy[8];
      MPI_Recv(dummy, sizeof(dummy), MPI_CHAR, st.MPI_SOURCE, kRollCallTag, watch_->comm,
               MPI_STATUS_IGNORE);
    }
    const int64_t step = state_->step.load();
    SendText(watch_->comm, st.MPI_SOURCE, kAnswerTag,
             absl::StrCat(step >= 0 ? absl::StrCat("step ", step) : std::string("outside a step"),
                          ": waiting in ", what));
  }
}

World::RollCall World::TakeRollCall(const std::string& what, absl::Duration grace) const {
  RollCall out;
  if (!watch_ || size_ == 1) return out;
  for (int r = 0; r < size_; ++r) {
    if (r != rank_) SendText(watch_->comm, r, kRollCallTag, "?");
  }
  std::vector<bool> heard(size_, false);
  heard[rank_] = true;
  int missing = size_ - 1;
  const absl::Time deadline = absl::Now() + grace;
  while (missing > 0 && absl::Now() < deadline) {
    AnswerRollCalls(what);  // a peer that timed out too is taking its own roll call
    int pending = 0;
    MPI_Status st;
    std::string text;
    {
      std::lock_guard<std::mutex> lock(MpiCallMutex());
      if (MPI_Iprobe(MPI_ANY_SOURCE, kAnswerTag, watch_->comm, &pending, &st) != MPI_SUCCESS) break;
      if (pending) {
        int count = 0;
        MPI_Get_count(&st, MPI_CHAR, &count);
        text.assign(static_cast<size_t>(count), '\0');
        MPI_Recv(text.data(), count, MPI_CHAR, st.MPI_SOURCE, kAnswerTag, watch_->comm,
                 MPI_STATUS_IGNORE);
      }
    }
    if (!pending) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (!heard[st.MPI_SOURCE]) {
      heard[st.MPI_SOURCE] = true;
      --missing;
      out.waiting.emplace_back(st.MPI_SOURCE, std::move(text));
    }
  }
  for (int r = 0; r < size_; ++r) {
    if (!heard[r]) out.silent.push_back(r);
  }
  return out;
}

}  // namespace loom
