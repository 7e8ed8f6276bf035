#include "parallel/grad_reducer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

namespace loom {

GradReducer::ProgressThread::ProgressThread(Communicator& comm,
                                            std::chrono::microseconds interval)
    : comm_(comm), interval_(interval), thread_([this] { Run(); }) {}

GradReducer::ProgressThread::~ProgressThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void GradReducer::ProgressThread::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (active_) return;
    active_ = true;
  }
  cv_.notify_all();
}

absl::Status GradReducer::ProgressThread::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = false;
  return std::exchange(error_, absl::OkStatus());
}

void GradReducer::ProgressThread::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (!active_) {
      cv_.wait(lock);
      continue;
    }
    absl::Status s = comm_.ProgressCpu();
    calls_.fetch_add(1, std::memory_order_relaxed);
    if (!s.ok()) {
      error_ = std::move(s);
      active_ = false;  // Finish() reports it; MPI is not to be trusted after this
      continue;
    }
    // Sleeping releases mu_, so Start() and Stop() never wait longer than one ProgressCpu().
    cv_.wait_for(lock, interval_);
  }
}

FlatRange ShardOf(const FlatRange& bucket, int dp, int rank) {
  const int64_t block = bucket.size() / dp;
  const int64_t begin = bucket.begin + rank * block;
  return {begin, rank == dp - 1 ? bucket.end : begin + block};
}

int64_t ShardedBufferSize(int64_t total, int dp) {
  const int64_t n = std::max(dp, 1);
  return (total + n - 1) / n * n;
}

absl::StatusOr<std::unique_ptr<GradReducer>> GradReducer::Create(const ParamTable& table,
                                                                 const Tensor& grads,
                                                                 Communicator& dp,
                                                                 Options options) {
  const int64_t total = table.total();
  const int64_t storage = options.shard ? ShardedBufferSize(total, dp.size()) : total;
  if (!grads.defined() || grads.dtype() != DType::kF32 || grads.numel() != storage) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradReducer: the gradient buffer must be f32 with ", storage, " elements (the table's ",
        total, options.shard ? absl::StrCat(" padded to a multiple of dp = ", dp.size()) : "",
        "), got ", grads.defined() ? grads.DebugString() : std::string("none")));
  }
  if (options.bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GradReducer: bucket_bytes must be > 0 (parallel.grad_bucket_mb), got ",
                     options.bucket_bytes));
  }
  const std::vector<ParamSpec>& specs = table.specs();
  int64_t at = 0;
  for (const ParamSpec& s : specs) {
    if (s.offset != at) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GradReducer: parameter ", s.name, " starts at element ", s.offset, ", expected ", at,
          ": buckets need the table's parameters to tile the buffer in table order"));
    }
    at += s.numel();
  }
  auto r = std::unique_ptr<GradReducer>(new GradReducer());
  r->table_ = &table;
  r->grads_ = grads;
  r->dp_ = &dp;
  r->options_ = options;
  if (options.progress_interval_us > 0 && dp.size() > 1 && grads.on_host() &&
      dp.CpuProgressFromAnyThread()) {
    r->progress_ = std::make_unique<ProgressThread>(
        dp, std::chrono::microseconds(options.progress_interval_us));
  }
  // Backward order: from the last parameter to the first, closing a bucket once it is full.
  // Bucket b is [begins[b], begins[b - 1]), the first ending at the buffer's end.
  std::vector<int64_t> begins;
  const int64_t bucket_elems = std::max<int64_t>(1, options.bucket_bytes / 4);
  int64_t filled = 0;
  for (int i = static_cast<int>(specs.size()) - 1; i >= 0; --i) {
    filled += specs[i].numel();
    if (filled >= bucket_elems || i == 0) {
      begins.push_back(specs[i].offset);
      filled = 0;
    }
  }
  const int n = dp.size();
  int64_t end = total;
  if (options.shard) {
    // Every boundary a multiple of dp, the top one the padded end: equal shards everywhere.
    for (int64_t& b : begins) b = ShardedBufferSize(b, n);
    end = storage;
  }
  for (int64_t b : begins) {
    if (b >= end) continue;  // rounding emptied it
    r->buckets_.push_back({FlatRange{b, end}, -1, -1});
    end = b;
  }
  // The parameters each bucket holds (a zero-size one counts where it starts).
  r->bucket_of_.assign(specs.size(), {});
  for (int i = 0; i < static_cast<int>(specs.size()); ++i) {
    const int64_t lo = specs[i].offset,
                  hi = specs[i].offset + std::max<int64_t>(1, specs[i].numel());
    for (int b = 0; b < static_cast<int>(r->buckets_.size()); ++b) {
      Bucket& k = r->buckets_[b];
      if (lo < k.range.end && k.range.begin < hi) {
        r->bucket_of_[i].push_back(b);
        k.first_param = k.first_param < 0 ? i : std::min(k.first_param, i);
        k.last_param = std::max(k.last_param, i);
      }
    }
  }
  for (Bucket& k : r->buckets_) {
    // Padding alone (no parameter): ready from the start.
    if (k.first_param < 0) k.first_param = 0, k.last_param = -1;
  }
  if (!options.shard) {
    if (total > 0) r->owned_.push_back({0, total});
  } else {
    for (auto it = r->buckets_.rbegin(); it != r->buckets_.rend(); ++it) {
      const FlatRange s = ShardOf(it->range, n, dp.rank());
      const FlatRange own{s.begin, std::min(s.end, total)};
      if (own.size() > 0) r->owned_.push_back(own);
    }
  }
  return r;
}

GradReducer::~GradReducer() {
  // A reducer destroyed mid-step (an error unwound the trainer) leaves no thread probing MPI.
  if (progress_ != nullptr) (void)progress_->Stop();
}

std::vector<FlatRange> GradReducer::BucketRanges() const {
  std::vector<FlatRange> out;
  for (const Bucket& b : buckets_) out.push_back(b.range);
  return out;
}

absl::Status GradReducer::BeginBackward() {
  if (active_) {
    return absl::FailedPreconditionError(
        "GradReducer::BeginBackward called again before Finish(): the previous step's "
        "reduction was never completed");
  }
  active_ = true;
  marked_.assign(table_->specs().size(), false);
  unmarked_in_bucket_.assign(buckets_.size(), 0);
  for (const Bucket& b : buckets_) {
    unmarked_in_bucket_[&b - buckets_.data()] = b.last_param - b.first_param + 1;
  }
  flight_.clear();
  flight_.resize(buckets_.size());
  next_launch_ = 0;
  stats_ = Stats{};
  stats_.buckets = static_cast<int>(buckets_.size());
  return absl::OkStatus();
}

absl::Status GradReducer::MarkReady(int param_index) {
  const int n = static_cast<int>(table_->specs().size());
  if (param_index < 0 || param_index >= n) {
    return absl::InvalidArgumentError(absl::StrCat("GradReducer::MarkReady: parameter index ",
                                                   param_index, " outside the table's ", n));
  }
  const std::string& name = table_->specs()[param_index].name;
  if (!active_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GradReducer::MarkReady(", name,
        ") outside the last micro-batch's backward: call BeginBackward() first (a gradient is "
        "final only after the last micro-batch)"));
  }
  if (marked_[param_index]) {
    return absl::FailedPreconditionError(
        absl::StrCat("GradReducer::MarkReady(", name,
                     ") called twice in one step: its bucket may already be "
                     "in flight, so a later change to its gradient would be lost"));
  }
  marked_[param_index] = true;
  for (int b : bucket_of_[param_index]) --unmarked_in_bucket_[b];
  LOOM_RETURN_IF_ERROR(LaunchReady());
  return Poll();
}

absl::Status GradReducer::LaunchReady() {
  while (next_launch_ < static_cast<int>(buckets_.size()) &&
         unmarked_in_bucket_[next_launch_] == 0) {
    LOOM_RETURN_IF_ERROR(Launch(next_launch_++));
  }
  return absl::OkStatus();
}

absl::Status GradReducer::Launch(int b) {
  const FlatRange range = buckets_[b].range;
  InFlight& f = flight_[b];
  f.launched = Clock::now();
  f.launched_flag = true;
  stats_.bytes += range.size() * 4;
  Communicator& dp = *dp_;
  if (!options_.shard) {
    LOOM_ASSIGN_OR_RETURN(
        auto w, dp.AllReduceAsync(grads_.FlatView(range.begin, range.size()), ReduceOp::kAvg));
    f.works.push_back(std::move(w));
    if (progress_ != nullptr) progress_->Start();
    return absl::OkStatus();
  }
  // Sharded buckets divide by dp (Create): one reduce-scatter, in place, each rank's block
  // landing where it lies in the buffer.
  const int n = dp.size();
  const int64_t block = range.size() / n;
  LOOM_ASSIGN_OR_RETURN(
      auto w, dp.ReduceScatterAsync(grads_.FlatView(range.begin, range.size()),
                                    grads_.FlatView(range.begin + dp.rank() * block, block),
                                    ReduceOp::kAvg));
  f.works.push_back(std::move(w));
  if (progress_ != nullptr) progress_->Start();
  return absl::OkStatus();
}

absl::Status GradReducer::Poll() {
  for (int b = 0; b < next_launch_; ++b) {
    InFlight& f = flight_[b];
    if (f.done_flag) continue;
    bool all = true;
    for (auto& w : f.works) {
      LOOM_ASSIGN_OR_RETURN(const bool done, w->Test());
      all &= done;
    }
    if (all) {
      f.done = Clock::now();
      f.done_flag = true;
    }
  }
  return absl::OkStatus();
}

absl::Status GradReducer::Finish() {
  if (!active_) {
    return absl::FailedPreconditionError(
        "GradReducer::Finish without BeginBackward(): there is no step to finish");
  }
  for (bool m : marked_) stats_.unmarked_at_finish += m ? 0 : 1;
  const auto wait_start = Clock::now();
  // From here this thread drives MPI itself (it spins in Wait): the helper would only compete.
  if (progress_ != nullptr) {
    absl::Status s = progress_->Stop();
    stats_.progress_calls = progress_->TakeCalls();
    if (!s.ok()) {
      active_ = false;
      return absl::Status(s.code(), absl::StrCat("GradReducer progress thread: ", s.message()));
    }
  }
  while (next_launch_ < static_cast<int>(buckets_.size())) {
    LOOM_RETURN_IF_ERROR(Launch(next_launch_++));
  }
  for (InFlight& f : flight_) {
    if (f.done_flag) continue;
    for (auto& w : f.works) LOOM_RETURN_IF_ERROR(w->Wait());
    f.done = Clock::now();
    f.done_flag = true;
  }
  const auto wait_end = Clock::now();
  active_ = false;
  stats_.wait_s = std::chrono::duration<double>(wait_end - wait_start).count();
  // Union of the in-flight intervals (launches are in bucket order, so sorted by start).
  double total = 0;
  Clock::time_point cur_begin{}, cur_end{};
  bool open = false;
  for (const InFlight& f : flight_) {
    if (open && f.launched <= cur_end) {
      cur_end = std::max(cur_end, f.done);
      continue;
    }
    if (open) total += std::chrono::duration<double>(cur_end - cur_begin).count();
    cur_begin = f.launched;
    cur_end = f.done;
    open = true;
  }
  if (open) total += std::chrono::duration<double>(cur_end - cur_begin).count();
  stats_.comm_s = total;
  for (InFlight& f : flight_) f.works.clear();
  return absl::OkStatus();
}

}  // namespace loom
