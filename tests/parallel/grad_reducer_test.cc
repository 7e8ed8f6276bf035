// GradReducer and the (distributed) optimizer under mpirun (ctest runs this binary at 2 and 3
// ranks; the world is the data-parallel group). A synthetic table of parameters with odd sizes
// (so buckets and shards do not divide evenly) and per-rank gradients from a formula of (rank,
// step, index): every rank computes the mean of all ranks' gradients itself, without MPI. The
// values are multiples of 1/8 below 32, so sums are exact in fp32 in any order and the mean
// (sum * (1/dp), as the MPI backend computes kAvg) is bitwise reproducible.
#include "parallel/grad_reducer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/adamw.h"
#include "parallel/distributed_optimizer.h"
#include "parallel/param_table.h"
#include "parallel/world.h"

namespace loom {
namespace {

Communicator& Dp() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return (*w)->comm();
}

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

float Grad(int rank, int step, int64_t i) {
  return static_cast<float>((rank * 37 + step * 11 + i * 13) % 251 - 125) / 8.0f;
}
std::vector<float> Grads(int rank, int step, int64_t n) {
  std::vector<float> g(n);
  for (int64_t i = 0; i < n; ++i) g[i] = Grad(rank, step, i);
  return g;
}
std::vector<float> MeanGrads(int dp, int step, int64_t n) {
  std::vector<float> g(n);
  for (int64_t i = 0; i < n; ++i) {
    float s = 0;
    for (int r = 0; r < dp; ++r) s += Grad(r, step, i);
    g[i] = s * (1.0f / static_cast<float>(dp));
  }
  return g;
}

// Overwrites v's values in place: the reducer holds a view of its storage.
void Set(std::vector<float>& v, const std::vector<float>& values) {
  std::copy(values.begin(), values.end(), v.begin());
}

Tensor Host(std::vector<float>& v) {
  return Tensor::View(v.data(), Shape{static_cast<int64_t>(v.size())}, DType::kF32, CpuDevice());
}

// Some work between two MarkReady calls, as backward would do.
float Work(int n) {
  float x = 1;
  for (int i = 0; i < n; ++i) x = x * 1.0000001f + 1e-7f;
  return x;
}

// Marks every parameter in `order`, polling between marks.
void MarkAll(GradReducer& r, const std::vector<int>& order) {
  volatile float sink = 0;
  for (int p : order) {
    sink = sink + Work(200);
    ASSERT_TRUE(r.Poll().ok());
    absl::Status s = r.MarkReady(p);
    ASSERT_TRUE(s.ok()) << s;
  }
}

std::vector<int> BackwardOrder(const ParamTable& t) {
  std::vector<int> o(t.specs().size());
  std::iota(o.rbegin(), o.rend(), 0);
  return o;
}

TEST(GradReducerTest, BucketsTileTheBufferInBackwardOrder) {
  Communicator& dp = Dp();
  ParamTable t = Table();
  std::vector<float> g(t.total());
  auto r = GradReducer::Create(t, Host(g), dp, {.bucket_bytes = 4 * 8, .shard = false});
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& b = (*r)->buckets();
  ASSERT_GE(b.size(), 5u);
  int64_t end = t.total();
  int last = static_cast<int>(t.specs().size()) - 1;
  for (const auto& k : b) {
    EXPECT_EQ(k.range.end, end);
    EXPECT_EQ(k.last_param, last);
    EXPECT_EQ(k.range.begin, t.specs()[k.first_param].offset);
    end = k.range.begin;
    last = k.first_param - 1;
  }
  EXPECT_EQ(end, 0);
  // One bucket for everything when the bucket is large.
  auto one = GradReducer::Create(t, Host(g), dp, {.bucket_bytes = 1 << 20, .shard = false});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ((*one)->buckets().size(), 1u);
  // Bad inputs are refused.
  EXPECT_FALSE(GradReducer::Create(t, Host(g), dp, {.bucket_bytes = 0}).ok());
  std::vector<float> short_g(t.total() - 1);
  EXPECT_FALSE(GradReducer::Create(t, Host(short_g), dp, {}).ok());
}

// (a) All-reduce in tiny buckets: the buffer holds the mean of all ranks' gradients, step after
// step, whatever order each rank marks its parameters in.
TEST(GradReducerTest, AllReduceGivesTheMean) {
  Communicator& dp = Dp();
  ParamTable t = Table();
  std::vector<float> g(t.total());
  auto r = GradReducer::Create(t, Host(g), dp, {.bucket_bytes = 4 * 8, .shard = false});
  ASSERT_TRUE(r.ok()) << r.status();
  for (int step = 0; step < 3; ++step) {
    Set(g, Grads(dp.rank(), step, t.total()));
    ASSERT_TRUE((*r)->BeginBackward().ok());
    std::vector<int> order = BackwardOrder(t);
    // Step 1: each rank its own shuffled order (launches still go in bucket order).
    if (step == 1) std::shuffle(order.begin(), order.end(), std::mt19937(dp.rank() + 5));
    // Step 2: half the parameters left unmarked; Finish launches their buckets.
    if (step == 2) order.resize(order.size() / 2);
    MarkAll(**r, order);
    ASSERT_TRUE((*r)->Finish().ok());
    EXPECT_EQ(g, MeanGrads(dp.size(), step, t.total())) << "step " << step;
    const auto& st = (*r)->stats();
    EXPECT_EQ(st.bytes, t.total() * 4);
    EXPECT_EQ(st.buckets, static_cast<int>((*r)->buckets().size()));
    EXPECT_EQ(st.unmarked_at_finish,
              step == 2 ? static_cast<int>(t.specs().size() - order.size()) : 0);
    EXPECT_GE(st.hidden_fraction(), 0.0);
    EXPECT_LE(st.hidden_fraction(), 1.0);
  }
  ASSERT_EQ((*r)->OwnedRanges().size(), 1u);
  EXPECT_EQ((*r)->OwnedRanges()[0], (FlatRange{0, t.total()}));
}

// The progress thread: rank 0 launches its bucket and then sleeps without calling MPI, as a
// long GEMM would. A multi-round all-reduce of a large bucket cannot complete on the other ranks
// unless rank 0 advances its part, so their Finish() returns within the sleep only when rank 0's
// helper thread drives MPI. The control run (thread off) shows the premise: they wait it out.
double PeerWaitWhileRankZeroSleeps(int progress_interval_us, int64_t* rank0_calls) {
  Communicator& dp = Dp();
  std::vector<ParamDesc> d(1);
  d[0].name = "big.weight";
  d[0].shape = Shape{1024, 1024};  // 4 MiB: far above MPI's eager limit, several rounds
  auto t = ParamTable::Create(d);
  EXPECT_TRUE(t.ok()) << t.status();
  std::vector<float> g(t->total());
  GradReducer::Options o;
  o.progress_interval_us = progress_interval_us;
  auto r = GradReducer::Create(*t, Host(g), dp, o);
  EXPECT_TRUE(r.ok()) << r.status();
  Set(g, Grads(dp.rank(), 0, t->total()));
  constexpr auto kSleep = std::chrono::milliseconds(600);
  EXPECT_TRUE(dp.Barrier().ok());
  EXPECT_TRUE((*r)->BeginBackward().ok());
  EXPECT_TRUE((*r)->MarkReady(0).ok());  // launches the only bucket
  if (dp.rank() == 0) std::this_thread::sleep_for(kSleep);
  EXPECT_TRUE((*r)->Finish().ok());
  EXPECT_EQ(g, MeanGrads(dp.size(), 0, t->total()));
  double wait[1] = {dp.rank() == 0 ? 0.0 : (*r)->stats().wait_s};
  EXPECT_TRUE(dp.AllReduceHost(absl::MakeSpan(wait, 1), ReduceOp::kMax).ok());
  *rank0_calls = (*r)->stats().progress_calls;
  return wait[0] / std::chrono::duration<double>(kSleep).count();
}

TEST(GradReducerTest, ProgressThreadAdvancesTheReductionWhileTheCallerComputes) {
  if (Dp().size() < 2) GTEST_SKIP() << "needs 2 ranks";
  int64_t calls = 0;
  const double with_thread = PeerWaitWhileRankZeroSleeps(200, &calls);
  if (Dp().rank() == 0) {
    EXPECT_GT(calls, 0);
  }
  EXPECT_LT(with_thread, 0.5) << "the other ranks waited for rank 0 to wake up";
  const double without = PeerWaitWhileRankZeroSleeps(0, &calls);
  EXPECT_EQ(calls, 0);
  EXPECT_GT(without, 0.8) << "the premise failed: the reduction finished without rank 0";
}

// (b) Sharded: each rank's owned ranges hold the mean; the ranks' ranges partition the buffer.
TEST(GradReducerTest, ReduceScatterLeavesTheMeanInOwnedRanges) {
  Communicator& dp = Dp();
  ParamTable t = Table();
  std::vector<float> g(t.total());
  auto r = GradReducer::Create(t, Host(g), dp, {.bucket_bytes = 4 * 8, .shard = true});
  ASSERT_TRUE(r.ok()) << r.status();
  // Some bucket must leave a tail (size % dp != 0), or the tail path goes untested.
  bool tail = false;
  for (const auto& b : (*r)->buckets()) tail |= b.range.size() % dp.size() != 0;
  EXPECT_TRUE(tail || dp.size() == 1);
  std::vector<int> cover(t.total(), 0);
  for (const auto& b : (*r)->buckets()) {
    for (int k = 0; k < dp.size(); ++k) {
      const FlatRange s = ShardOf(b.range, dp.size(), k);
      for (int64_t i = s.begin; i < s.end; ++i) ++cover[i];
    }
  }
  EXPECT_TRUE(std::all_of(cover.begin(), cover.end(), [](int c) { return c == 1; }));
  int64_t owned = 0, prev_end = 0;
  for (const FlatRange& o : (*r)->OwnedRanges()) {
    EXPECT_GE(o.begin, prev_end);
    prev_end = o.end;
    owned += o.size();
  }
  EXPECT_NEAR(owned, t.total() / dp.size(), (*r)->buckets().size() * dp.size());

  for (int step = 0; step < 2; ++step) {
    Set(g, Grads(dp.rank(), step, t.total()));
    ASSERT_TRUE((*r)->BeginBackward().ok());
    MarkAll(**r, BackwardOrder(t));
    ASSERT_TRUE((*r)->Finish().ok());
    // Counted, not asserted: a rank leaving the loop early would leave its peers waiting.
    const std::vector<float> want = MeanGrads(dp.size(), step, t.total());
    int64_t wrong = 0, first = -1;
    for (const FlatRange& o : (*r)->OwnedRanges()) {
      for (int64_t i = o.begin; i < o.end; ++i) {
        if (g[i] != want[i] && wrong++ == 0) first = i;
      }
    }
    EXPECT_EQ(wrong, 0) << "rank " << dp.rank() << " step " << step << ", first at element "
                        << first;
  }
}

// Misuse is refused, not silently wrong; the reducer stays usable afterwards.
TEST(GradReducerTest, MisuseIsRefused) {
  Communicator& dp = Dp();
  ParamTable t = Table();
  std::vector<float> g(t.total());
  auto r = GradReducer::Create(t, Host(g), dp, {.bucket_bytes = 4 * 8, .shard = false});
  ASSERT_TRUE(r.ok());
  // Before BeginBackward (an earlier micro-batch): gradients are not final.
  absl::Status s = (*r)->MarkReady(0);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("embed.weight"), std::string::npos) << s;
  EXPECT_EQ((*r)->Finish().code(), absl::StatusCode::kFailedPrecondition);
  Set(g, Grads(dp.rank(), 0, t.total()));
  ASSERT_TRUE((*r)->BeginBackward().ok());
  EXPECT_EQ((*r)->BeginBackward().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*r)->MarkReady(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*r)->MarkReady(99).code(), absl::StatusCode::kInvalidArgument);
  const int last = static_cast<int>(t.specs().size()) - 1;
  ASSERT_TRUE((*r)->MarkReady(last).ok());
  s = (*r)->MarkReady(last);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("twice"), std::string::npos) << s;
  ASSERT_TRUE((*r)->Finish().ok());
  EXPECT_EQ(g, MeanGrads(dp.size(), 0, t.total()));
}

// Weights in [-1, 1] from a formula (the same on every rank).
std::vector<float> InitWeights(int64_t n) {
  std::vector<float> w(n);
  for (int64_t i = 0; i < n; ++i) w[i] = std::sin(0.37f * static_cast<float>(i) + 0.1f);
  return w;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, double rel,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::fabs(got[i] - want[i]), rel * std::fabs(want[i]) + 1e-7)
        << what << " element " << i << ": " << got[i] << " vs " << want[i];
  }
}

// Every rank's `v` equals rank 0's, bit for bit.
void ExpectSameOnAllRanks(Communicator& dp, const Tensor& t, const std::string& what) {
  auto copy = t.To(CpuDevice());
  ASSERT_TRUE(copy.ok());
  auto mine = t.To(CpuDevice());
  ASSERT_TRUE(mine.ok());
  ASSERT_TRUE(dp.Broadcast(*copy, 0).ok());
  EXPECT_EQ(std::memcmp(copy->data(), mine->data(), mine->nbytes()), 0)
      << what << ": rank " << dp.rank() << " differs from rank 0";
}

AdamWSettings Settings() {
  AdamWSettings s;
  s.weight_decay = 0.1f;
  return s;
}

// (c) The distributed optimizer (and the plain one after an all-reduce) equals plain AdamW on
// the mean gradients computed locally, step after step, and every rank holds the same weights.
void CheckAgainstReference(bool shard, bool bf16) {
  Communicator& dp = Dp();
  ParamTable t = Table();
  const int64_t n = t.total();
  const DType wt = bf16 ? DType::kBF16 : DType::kF32;
  auto params = Tensor::Empty(Shape{n}, wt, CpuDevice());
  auto grads = Tensor::Zeros(Shape{n}, DType::kF32, CpuDevice());
  ASSERT_TRUE(params.ok() && grads.ok());
  auto r = GradReducer::Create(t, *grads, dp, {.bucket_bytes = 4 * 8, .shard = shard});
  ASSERT_TRUE(r.ok());
  auto opt = shard ? CreateDistributedOptimizer(t, Settings(), CpuDevice(), dp, *params, *grads,
                                                (*r)->BucketRanges())
                   : CreatePlainOptimizer(t, Settings(), CpuDevice(), *params, *grads);
  ASSERT_TRUE(opt.ok()) << opt.status();
  EXPECT_EQ((*opt)->sharded(), shard);
  EXPECT_EQ((*opt)->owned_ranges(), (*r)->OwnedRanges());
  // The reference: one rank, plain AdamW on the mean gradients.
  auto ref_params = Tensor::Empty(Shape{n}, wt, CpuDevice());
  auto ref_grads = Tensor::Zeros(Shape{n}, DType::kF32, CpuDevice());
  ASSERT_TRUE(ref_params.ok() && ref_grads.ok());
  auto ref = CreatePlainOptimizer(t, Settings(), CpuDevice(), *ref_params, *ref_grads);
  ASSERT_TRUE(ref.ok());
  std::vector<float> w0 = InitWeights(n);
  ASSERT_TRUE((*opt)->LoadWeights(Host(w0)).ok());
  ASSERT_TRUE((*ref)->LoadWeights(Host(w0)).ok());
  for (int step = 1; step <= 4; ++step) {
    ASSERT_TRUE(grads->CopyFromFloats(Grads(dp.rank(), step, n)).ok());
    ASSERT_TRUE((*r)->BeginBackward().ok());
    MarkAll(**r, BackwardOrder(t));
    ASSERT_TRUE((*r)->Finish().ok());
    const float lr = 0.01f * static_cast<float>(step), scale = step == 3 ? 0.5f : 1.0f;
    ASSERT_TRUE((*opt)->Step(lr, step, scale).ok());
    ASSERT_TRUE(ref_grads->CopyFromFloats(MeanGrads(dp.size(), step, n)).ok());
    ASSERT_TRUE((*ref)->Step(lr, step, scale).ok());
    const std::string what = absl::StrCat(shard ? "distributed" : "plain", bf16 ? " bf16" : "",
                                          " step ", step, " rank ", dp.rank());
    auto got = params->ToFloatVector();
    auto want = ref_params->ToFloatVector();
    ASSERT_TRUE(got.ok() && want.ok());
    // bf16 weights: a master value within 1e-6 may round to the neighbouring bf16 value.
    ExpectClose(*got, *want, bf16 ? 1.0 / 128 : 1e-6, what + " weights");
    if (bf16) {
      // The fp32 master shard against the reference's master at the owned ranges.
      auto m = (*opt)->master().ToFloatVector();
      auto rm = (*ref)->master().ToFloatVector();
      ASSERT_TRUE(m.ok() && rm.ok());
      std::vector<float> sel;
      for (const FlatRange& o : (*opt)->owned_ranges()) {
        sel.insert(sel.end(), rm->begin() + o.begin, rm->begin() + o.end);
      }
      ExpectClose(*m, sel, 1e-6, what + " master");
    }
    ExpectSameOnAllRanks(dp, *params, what);
  }
}

TEST(DistributedOptimizerTest, MatchesPlainAdamWOnTheMean) { CheckAgainstReference(true, false); }
TEST(DistributedOptimizerTest, MatchesPlainAdamWOnTheMeanBf16Weights) {
  CheckAgainstReference(true, true);
}
TEST(DistributedOptimizerTest, PlainAfterAllReduceMatches) { CheckAgainstReference(false, false); }

// (d) Bytes per parameter: exactly the arithmetic when every bucket divides by dp (one bucket of
// 2*3*4*5 elements), and in sum over the ranks otherwise.
TEST(DistributedOptimizerTest, BytesPerParameterMatchTheArithmetic) {
  Communicator& dp = Dp();
  const int n_dp = dp.size();
  ParamDesc d;
  d.name = "w";
  d.shape = Shape{120};
  d.decay = true;
  auto even = ParamTable::Create({d});
  ASSERT_TRUE(even.ok());
  ParamTable odd = Table();
  for (bool bf16 : {false, true}) {
    for (const ParamTable* t : {&*even, &odd}) {
      const int64_t n = t->total();
      auto params = Tensor::Zeros(Shape{n}, bf16 ? DType::kBF16 : DType::kF32, CpuDevice());
      auto grads = Tensor::Zeros(Shape{n}, DType::kF32, CpuDevice());
      ASSERT_TRUE(params.ok() && grads.ok());
      auto r = GradReducer::Create(*t, *grads, dp, {.bucket_bytes = 4 * 8, .shard = true});
      ASSERT_TRUE(r.ok());
      auto opt = CreateDistributedOptimizer(*t, Settings(), CpuDevice(), dp, *params, *grads,
                                            (*r)->BucketRanges());
      auto plain = CreatePlainOptimizer(*t, Settings(), CpuDevice(), *params, *grads);
      ASSERT_TRUE(opt.ok() && plain.ok());
      const StateBytes p = (*plain)->MeasuredStateBytes(), pe = ExpectedStateBytes(bf16, 1);
      EXPECT_EQ(p.weights, pe.weights);
      EXPECT_EQ(p.grads, pe.grads);
      EXPECT_EQ(p.master, pe.master);
      EXPECT_EQ(p.moments, pe.moments);
      EXPECT_EQ(p.total(), bf16 ? 18.0 : 16.0);
      const StateBytes b = (*opt)->MeasuredStateBytes(), e = ExpectedStateBytes(bf16, n_dp);
      EXPECT_EQ(e.total(), bf16 ? 2 + 4 + 12.0 / n_dp : 4 + 4 + 8.0 / n_dp);
      EXPECT_EQ(b.weights, e.weights);
      EXPECT_EQ(b.grads, e.grads);
      if (t == &*even) {
        EXPECT_DOUBLE_EQ(b.master, e.master) << "bf16 " << bf16;
        EXPECT_DOUBLE_EQ(b.moments, e.moments) << "bf16 " << bf16;
        EXPECT_DOUBLE_EQ(b.total(), e.total());
      }
      // Over the ranks the shards add up to the whole buffer.
      double sums[2] = {b.master * n, b.moments * n};
      ASSERT_TRUE(dp.AllReduceHost(absl::MakeSpan(sums, 2), ReduceOp::kSum).ok());
      EXPECT_EQ(sums[0], bf16 ? 4.0 * n : 0.0);
      EXPECT_EQ(sums[1], 8.0 * n);
    }
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
