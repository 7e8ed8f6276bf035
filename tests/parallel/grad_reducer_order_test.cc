// GradReducer's launch order, seen directly instead of through timing: the gradients are written
// progressively, one parameter at a time in backward order (the rest of the buffer holds NaN,
// as gradients not yet computed would), each marked ready right after it is written. The
// data-parallel communicator is a spy (a 2-rank group whose backend runs in this process and
// plays a peer with the same gradients): at every launch it checks that each parameter the
// bucket covers is already final, and it reduces what the buffer held at the launch, as a real
// reduction that reads the buffer once launched would. So a bucket launched before its last
// gradient is final is named at its launch, and leaves NaN in the result. Also: each bucket is
// launched as soon as its last parameter is marked (the overlap), the buckets launch in bucket
// order whatever the order of the marks, and the same holds sharded (reduce-scatter).
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/communicator.h"
#include "parallel/grad_reducer.h"
#include "parallel/param_table.h"

namespace loom {
namespace {

ParamTable Table() {
  std::vector<ParamDesc> d;
  auto add = [&](const char* name, Shape shape, bool decay) {
    ParamDesc p;
    p.name = name;
    p.shape = shape;
    p.decay = decay;
    d.push_back(p);
  };
  add("embed.weight", Shape{7, 5}, true);
  add("a.norm", Shape{7}, false);
  add("a.fc.weight", Shape{13, 3}, true);
  add("a.fc.bias", Shape{11}, false);
  add("b.fc.weight", Shape{9, 17}, true);
  add("b.fc.bias", Shape{1}, false);
  add("b.norm", Shape{2}, false);
  add("head.weight", Shape{5, 23}, true);
  auto t = ParamTable::Create(d);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

float FinalGrad(int64_t i) { return static_cast<float>(i % 97 - 48) / 8.0f; }

// What the spy saw: the launches, in order, and every launch that came too early.
struct Record {
  const ParamTable* table = nullptr;
  const float* base = nullptr;      // the gradient buffer
  std::vector<bool> final;          // per parameter: its gradient is written
  std::vector<FlatRange> launches;  // ranges of the buffer, in launch order
  std::vector<std::string> early;
};

// Completes at the first Test or at Wait: writes `result` into `out` (what a peer with the same
// gradients and this rank reduce to: the values the buffer held at the launch).
class SpyWork : public CommWork {
 public:
  SpyWork(std::vector<float> result, float* out) : result_(std::move(result)), out_(out) {}
  absl::Status Wait() override {
    Complete();
    return absl::OkStatus();
  }
  absl::StatusOr<bool> Test() override {
    Complete();
    return true;
  }

 private:
  void Complete() {
    if (done_) return;
    std::memcpy(out_, result_.data(), result_.size() * sizeof(float));
    done_ = true;
  }
  std::vector<float> result_;
  float* out_;
  bool done_ = false;
};

class SpyBackend : public CommBackend {
 public:
  explicit SpyBackend(Record* r) : r_(r) {}
  absl::StatusOr<std::unique_ptr<CommWork>> AllReduce(const Tensor& t, ReduceOp,
                                                      const std::string&) override {
    const float* p = t.data_as<const float>();
    Launched(p - r_->base, t.numel());
    return std::make_unique<SpyWork>(std::vector<float>(p, p + t.numel()), const_cast<float*>(p));
  }
  // Rank 0 of 2 keeps block 0 of `in` (the peer's block is the same values).
  absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatter(const Tensor& in, const Tensor& out,
                                                          ReduceOp, const std::string&) override {
    const float* p = in.data_as<const float>();
    Launched(p - r_->base, in.numel());
    return std::make_unique<SpyWork>(std::vector<float>(p, p + out.numel()),
                                     const_cast<float*>(out.data_as<const float>()));
  }
  absl::StatusOr<std::unique_ptr<CommWork>> AllGatherV(const Tensor&, const Tensor&,
                                                       const std::vector<int64_t>&,
                                                       const std::string& what) override {
    return absl::UnimplementedError(what);
  }
  absl::StatusOr<std::unique_ptr<CommWork>> Broadcast(const Tensor&, int,
                                                      const std::string& what) override {
    return absl::UnimplementedError(what);
  }
  absl::StatusOr<std::unique_ptr<CommWork>> BatchSendRecv(absl::Span<const P2POp>,
                                                          const std::string& what) override {
    return absl::UnimplementedError(what);
  }
  absl::Status Barrier(const std::string&) override { return absl::OkStatus(); }
  absl::Status AllReduceHost(absl::Span<double>, ReduceOp, const std::string&) override {
    return absl::OkStatus();  // both "ranks" hold the same values
  }

 private:
  void Launched(int64_t begin, int64_t count) {
    r_->launches.push_back({begin, begin + count});
    const auto& specs = r_->table->specs();
    for (size_t i = 0; i < specs.size(); ++i) {
      const int64_t b = specs[i].offset, e = b + specs[i].numel();
      if (b < begin + count && begin < e && !r_->final[i]) {
        r_->early.push_back(absl::StrCat("elements [", begin, ", ", begin + count,
                                         ") launched before ", specs[i].name, " was final"));
      }
    }
  }
  Record* r_;
};

struct Run {
  bool shard = false;
  std::vector<int> order;  // the order parameters are written and marked
};

// How many buckets have a launch (sharded, a bucket may take two: the reduce-scatter of the
// part that splits evenly and the all-reduce of the rest).
size_t BucketsLaunched(const std::vector<GradReducer::Bucket>& buckets,
                       const std::vector<FlatRange>& launches) {
  size_t n = 0;
  for (const GradReducer::Bucket& b : buckets) {
    bool any = false;
    for (const FlatRange& l : launches) any |= l.begin >= b.range.begin && l.begin < b.range.end;
    n += any;
  }
  return n;
}

void Check(const Run& run) {
  const std::string what = absl::StrCat(run.shard ? "reduce-scatter" : "all-reduce", ", order ",
                                        ::testing::PrintToString(run.order));
  SCOPED_TRACE(what);
  const ParamTable table = Table();
  std::vector<float> buf(table.total(), std::numeric_limits<float>::quiet_NaN());
  Record rec;
  rec.table = &table;
  rec.base = buf.data();
  rec.final.assign(table.specs().size(), false);
  Communicator dp("dp", {0, 1}, 0, std::make_shared<CommState>(),
                  std::make_unique<SpyBackend>(&rec));
  Tensor grads = Tensor::View(buf.data(), Shape{table.total()}, DType::kF32, CpuDevice());
  GradReducer::Options o;
  o.bucket_bytes = 40 * 4;  // several buckets of a few parameters
  o.shard = run.shard;
  auto r = GradReducer::Create(table, grads, dp, o);
  ASSERT_TRUE(r.ok()) << r.status();
  GradReducer& red = **r;
  const auto& buckets = red.buckets();
  ASSERT_GE(buckets.size(), 3u);
  ASSERT_TRUE(red.BeginBackward().ok());
  std::vector<bool> marked(table.specs().size(), false);
  for (int p : run.order) {
    // This parameter's backward: its gradient is written, then marked final.
    const ParamSpec& s = table.specs()[p];
    for (int64_t i = s.offset; i < s.offset + s.numel(); ++i) buf[i] = FinalGrad(i);
    rec.final[p] = true;
    ASSERT_TRUE(red.MarkReady(p).ok());
    marked[p] = true;
    ASSERT_TRUE(red.Poll().ok());
    // The overlap: every bucket whose parameters, and those of every bucket before it, are all
    // marked has been launched by now.
    size_t due = 0;
    while (due < buckets.size()) {
      bool all = true;
      for (int q = buckets[due].first_param; q <= buckets[due].last_param; ++q) all &= marked[q];
      if (!all) break;
      ++due;
    }
    EXPECT_EQ(BucketsLaunched(buckets, rec.launches), due) << "after marking " << s.name;
  }
  ASSERT_TRUE(red.Finish().ok());
  EXPECT_TRUE(rec.early.empty()) << ::testing::PrintToString(rec.early);
  // Strictly in bucket order, each bucket once (sharded: its range, whose tail is all-reduced
  // separately when it does not split evenly).
  size_t k = 0;
  for (size_t b = 0; b < buckets.size(); ++b) {
    int64_t covered = buckets[b].range.begin;
    while (k < rec.launches.size() && rec.launches[k].begin == covered &&
           rec.launches[k].end <= buckets[b].range.end) {
      covered = rec.launches[k++].end;
    }
    EXPECT_EQ(covered, buckets[b].range.end) << "bucket " << b << " not launched whole, in order";
  }
  EXPECT_EQ(k, rec.launches.size()) << "launches beyond the buckets";
  // The reduced gradients are the final ones wherever this rank owns them.
  for (const FlatRange& own : red.OwnedRanges()) {
    for (int64_t i = own.begin; i < own.end; ++i) {
      ASSERT_EQ(buf[i], FinalGrad(i)) << "element " << i << " reduced from a stale value";
    }
  }
}

std::vector<int> Backward(int n) {
  std::vector<int> o(n);
  std::iota(o.rbegin(), o.rend(), 0);
  return o;
}

TEST(GradReducerOrderTest, NoBucketLaunchesBeforeItsLastGradientIsFinal) {
  const int n = static_cast<int>(Table().specs().size());
  for (bool shard : {false, true}) {
    Check({shard, Backward(n)});
    // Out of backward order (a tied or shared parameter finished late): the buckets still wait
    // for their last parameter and go in bucket order.
    std::vector<int> swapped = Backward(n);
    std::swap(swapped[0], swapped[n - 1]);
    Check({shard, swapped});
    std::vector<int> late = Backward(n);
    std::rotate(late.begin(), late.begin() + 1, late.end());  // the last parameter marked last
    Check({shard, late});
  }
}

}  // namespace
}  // namespace loom
