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

absl::StatusOr<std::unique_ptr<GradReducer>> GradReducer::Create(const ParamTable& table,
                                                                 const Tensor& grads,
                                                                 Communicator& dp,
                                                                 Options options) {
  if (!grads.defined() || grads.dtype() != DType::kF32 || grads.numel() != table.total()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradReducer: the gradient buffer must be f32 with the table's ", table.total(),
        " elements, got ", grads.defined() ? grads.DebugString() : std::string("none")));
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
  r->bucket_of_.assign(specs.size(), -1);
  // Backward order: from the last parameter to the first, closing a bucket once it is full.
  const int64_t bucket_elems = std::max<int64_t>(1, options.bucket_bytes / 4);
  int last = static_cast<int>(specs.size()) - 1;
  int64_t filled = 0;
  for (int i = last; i >= 0; --i) {
    filled += specs[i].numel();
    r->bucket_of_[i] = static_cast<int>(r->buckets_.size());
    if (filled >= bucket_elems || i == 0) {
      const int64_t end = specs[last].offset + specs[last].numel();
      r->buckets_.push_back({FlatRange{specs[i].offset, end}, i, last});
      last = i - 1;
      filled = 0;
    }
  }
  const int n = dp.size();
  if (!options.shard) {
    if (table.total() > 0) r->owned_.push_back({0, table.total()});
  } else {
    for (auto it = r->buckets_.rbegin(); it != r->buckets_.rend(); ++it) {
      const FlatRange own = ShardOf(it->range, n, dp.rank());
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
  --unmarked_in_bucket_[bucket_of_[param_index]];
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
  const int n = dp.size();
  const int64_t block = range.size() / n;
  if (block > 0) {
    LOOM_ASSIGN_OR_RETURN(
        auto w, dp.ReduceScatterAsync(grads_.FlatView(range.begin, block * n),
                                      grads_.FlatView(range.begin + dp.rank() * block, block),
                                      ReduceOp::kAvg));
    f.works.push_back(std::move(w));
  }
  const int64_t tail = range.size() - block * n;
  if (tail > 0) {
    LOOM_ASSIGN_OR_RETURN(
        auto w, dp.AllReduceAsync(grads_.FlatView(range.begin + block * n, tail), ReduceOp::kAvg));
    f.works.push_back(std::move(w));
  }
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
