// GradReducer: averages a flat fp32 gradient buffer (laid out as a ParamTable) over the
// data-parallel group in buckets, overlapping the reduction with the rest of backward.
//
// Buckets hold whole parameters taken in backward order (reverse table order) until they reach
// about Options::bucket_bytes; each is a contiguous range of the buffer. During the last
// micro-batch's backward the caller marks each parameter whose gradient is final; when every
// parameter of a bucket is marked, that bucket's reduction is launched asynchronously and the
// caller goes on computing, calling Poll() between ops so that MPI progresses (on the GPU the
// communication stream does). Finish() launches what is left, waits for everything and leaves
// the mean over dp of every rank's gradients.
//
// Progress on the CPU: MPI advances a nonblocking collective only inside MPI calls, and a
// caller that polls between layers leaves each round of a bucket's all-reduce waiting for the
// next layer. So while buckets are in flight a helper thread calls Communicator::ProgressCpu()
// every Options::progress_interval_us (it sleeps otherwise, and Finish() stops it before it
// waits): the reduction's copies and sums then run in small slices during backward. It is used
// when the communicator allows it (CpuProgressFromAnyThread()), dp > 1 and the buffer is on the
// CPU; Stats::progress_calls counts its calls.
//
// Sharded (ZeRO-1, Options::shard): each bucket is reduce-scattered instead of all-reduced, and
// every bucket divides into dp equal shards, so it is one reduce-scatter here and one
// all-gather in the distributed optimizer (with unequal shards NCCL would need one broadcast per
// rank). For that the buffer is padded: its storage holds ShardedBufferSize(total, dp) elements
// (GptModel::PadBuffers; the padding is zero and belongs to no parameter), every bucket boundary
// is rounded up to a multiple of dp (a parameter may then straddle two buckets: both wait for
// it), and the top bucket ends at the padded size. Rank r keeps block r of each bucket.
// OwnedRanges() lists those blocks clipped to the table (the padding is nobody's); the rest of
// the buffer then holds stale local values.
//
// Promises and checks:
// - Every rank issues the same collectives in the same order: buckets launch strictly in bucket
//   order, whatever the order of MarkReady calls (a complete bucket waits for the ones before).
//   Marking out of backward order is therefore safe; it only delays launches.
// - MarkReady outside BeginBackward()..Finish() (i.e. during an earlier micro-batch, whose
//   gradients are not final), twice for one parameter, or with a bad index is
//   FailedPrecondition / InvalidArgument naming the parameter; nothing is launched for it.
// - Finish() without BeginBackward() is FailedPrecondition. Finish() with parameters left
//   unmarked is allowed (backward is over, so their gradients are final): their buckets are
//   launched then, without overlap, and Stats::unmarked_at_finish counts them so a log can say
//   that hooks are missing.
// - Timing is as the host sees it: a bucket's communication lasts from its launch to the poll
//   or wait that first finds it complete. On the CPU the reduction is itself CPU work done inside
//   those polls, so "hidden" time is not free time: see docs/parallel.md for both figures.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/adamw.h"
#include "parallel/communicator.h"
#include "parallel/param_table.h"
#include "runtime/tensor.h"

namespace loom {

// The part of a bucket that rank `rank` of `dp` keeps when sharded: block `rank` of
// floor(size / dp) elements, the last rank also taking the size % dp elements at the end (none
// for the reducer's sharded buckets, which divide by dp).
FlatRange ShardOf(const FlatRange& bucket, int dp, int rank);
// The storage a sharded (ZeRO-1) gradient or weight buffer of `total` elements needs: total
// rounded up to a multiple of dp.
int64_t ShardedBufferSize(int64_t total, int dp);

class GradReducer {
 public:
  struct Options {
    int64_t bucket_bytes = int64_t{25} << 20;  // parallel.grad_bucket_mb
    bool shard = false;                        // reduce-scatter (ZeRO-1) instead of all-reduce
    // CPU: the helper thread's period while buckets are in flight (see above); 0 = no thread,
    // progress only in Poll(), MarkReady() and Finish(). Each wake-up costs a context switch on
    // a core that backward is using: on the 2-core development VM (dp 2, one thread per rank)
    // 200 us made the step 7% slower, 1000 us was within noise of no thread (1.5% faster).
    int progress_interval_us = 1000;
  };
  struct Bucket {
    FlatRange range;              // elements of the buffer (sharded: may reach into the padding)
    int first_param, last_param;  // table indices, first <= last, all of the range's params
  };
  // Of the last BeginBackward()..Finish().
  struct Stats {
    int buckets = 0;
    int64_t bytes = 0;           // gradient bytes each rank put into collectives
    double comm_s = 0;           // wall time with at least one bucket in flight
    double wait_s = 0;           // time the caller spent blocked in Finish()
    int unmarked_at_finish = 0;  // parameters Finish() had to launch
    int64_t progress_calls = 0;  // the helper thread's ProgressCpu() calls
    // Share of the communication time that overlapped the caller's work (0..1).
    double hidden_fraction() const {
      return comm_s > 0 ? std::max(0.0, 1.0 - wait_s / comm_s) : 0.0;
    }
  };

  // grads: f32, table.total() elements (sharded: ShardedBufferSize(table.total(), dp.size())),
  // on any device `dp` can carry. The table's parameters must tile the buffer in table order
  // (offsets increasing, no gaps). The table, the buffer's storage and `dp` must outlive the
  // reducer.
  static absl::StatusOr<std::unique_ptr<GradReducer>> Create(const ParamTable& table,
                                                             const Tensor& grads, Communicator& dp,
                                                             Options options);
  ~GradReducer();

  // Before the last micro-batch's backward: clears the marks of the previous step.
  absl::Status BeginBackward();
  // The gradient of table parameter `param_index` is final (see the header's checks).
  absl::Status MarkReady(int param_index);
  // Drives progress of the buckets in flight; cheap, call it between ops.
  absl::Status Poll();
  // Launches the remaining buckets, waits for all: the buffer (or, sharded, OwnedRanges())
  // holds the mean over dp.
  absl::Status Finish();

  const std::vector<Bucket>& buckets() const { return buckets_; }
  std::vector<FlatRange> BucketRanges() const;
  // Where this rank's reduced gradients are after Finish(): the whole buffer unsharded, one
  // ShardOf range per (non-empty) bucket sharded, in increasing order.
  const std::vector<FlatRange>& OwnedRanges() const { return owned_; }
  const Stats& stats() const { return stats_; }
  bool shard() const { return options_.shard; }
  Communicator& comm() const { return *dp_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct InFlight {
    std::vector<std::unique_ptr<CommWork>> works;
    Clock::time_point launched, done;
    bool launched_flag = false, done_flag = false;
  };
  // The helper thread: ProgressCpu() every `interval` while active, asleep otherwise.
  class ProgressThread {
   public:
    ProgressThread(Communicator& comm, std::chrono::microseconds interval);
    ~ProgressThread();
    void Start();
    // On return the thread is not inside ProgressCpu() and will not enter it before the next
    // Start(). Returns the first error a ProgressCpu() call met since the last Stop().
    absl::Status Stop();
    int64_t TakeCalls() { return calls_.exchange(0); }

   private:
    void Run();
    Communicator& comm_;
    const std::chrono::microseconds interval_;
    std::mutex mu_;  // held by the thread during each ProgressCpu() call
    std::condition_variable cv_;
    bool active_ = false, stop_ = false;
    absl::Status error_;
    std::atomic<int64_t> calls_{0};
    std::thread thread_;
  };

  GradReducer() = default;
  absl::Status Launch(int b);
  absl::Status LaunchReady();

  const ParamTable* table_ = nullptr;
  Tensor grads_;
  Communicator* dp_ = nullptr;
  Options options_;
  std::unique_ptr<ProgressThread> progress_;  // null when not used
  std::vector<Bucket> buckets_;  // in launch (backward) order: bucket 0 ends the buffer
  std::vector<std::vector<int>> bucket_of_;  // parameter index -> the buckets it lies in
  std::vector<FlatRange> owned_;
  // Per step.
  bool active_ = false;
  std::vector<bool> marked_;
  std::vector<int> unmarked_in_bucket_;
  std::vector<InFlight> flight_;
  int next_launch_ = 0;
  Stats stats_;
};

}  // namespace loom
