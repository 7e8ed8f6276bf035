// The MPI backend of Communicator, run under mpirun at several world sizes (ctest registers
// this binary at 1, 2, 3 and 4 ranks, and at 8 for the sub-groups of a tp 2 x dp 2 x pp 2 grid).
// Every rank fills its inputs from a formula of (rank, index) and computes the expected result
// itself from the same formula for all ranks: the reference never goes through MPI. Values are
// small integers, so sums are exact in fp32 whatever order MPI adds them in.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/communicator.h"
#include "parallel/process_groups.h"
#include "parallel/rank_grid.h"
#include "parallel/world.h"

namespace loom {
namespace {

World& TheWorld() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return **w;
}

float Value(int rank, int64_t i, int salt = 0) {
  return static_cast<float>(((rank + 1) * 7 + i * 3 + salt * 5) % 23) - 11.0f;
}

std::vector<float> Fill(int rank, int64_t n, int salt = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = Value(rank, i, salt);
  return v;
}

Tensor Host(std::vector<float>& v) {
  return Tensor::View(v.data(), Shape{static_cast<int64_t>(v.size())}, DType::kF32, CpuDevice());
}

// Sizes that do not divide the group sizes used (1, 2, 3, 4, 8).
const int64_t kSizes[] = {1, 5, 7, 1001, 4099};

void CheckAllReduce(Communicator& comm, int salt) {
  for (int64_t n : kSizes) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kAvg}) {
      std::vector<float> data = Fill(comm.rank(), n, salt);
      ASSERT_TRUE(comm.AllReduce(Host(data), op).ok());
      for (int64_t i = 0; i < n; ++i) {
        float sum = 0, mx = -1e30f;
        for (int r = 0; r < comm.size(); ++r) {
          sum += Value(r, i, salt);
          mx = std::max(mx, Value(r, i, salt));
        }
        const float want = op == ReduceOp::kSum   ? sum
                           : op == ReduceOp::kMax ? mx
                                                  : sum * (1.0f / comm.size());
        ASSERT_FLOAT_EQ(data[i], want) << comm.Describe() << " " << ReduceOpName(op) << " n=" << n
                                       << " i=" << i;
      }
    }
  }
}

void CheckReduceScatter(Communicator& comm, int salt) {
  const int p = comm.size();
  for (int64_t k : {int64_t{1}, int64_t{3}, int64_t{1001}}) {
    for (bool inside : {false, true}) {
      std::vector<float> in = Fill(comm.rank(), p * k, salt);
      std::vector<float> out_own(k, -99.0f);
      // `inside`: the output is this rank's block of the input (the distributed optimizer's
      // gradient shard), which MPI cannot take aliased.
      Tensor out = inside ? Host(in).FlatView(comm.rank() * k, k) : Host(out_own);
      ASSERT_TRUE(comm.ReduceScatter(Host(in), out, ReduceOp::kSum).ok());
      const float* got = out.data_as<float>();
      for (int64_t i = 0; i < k; ++i) {
        float sum = 0;
        for (int r = 0; r < p; ++r) sum += Value(r, comm.rank() * k + i, salt);
        ASSERT_FLOAT_EQ(got[i], sum) << comm.Describe() << " k=" << k << " inside=" << inside;
      }
    }
  }
}

void CheckAllGather(Communicator& comm, int salt) {
  const int p = comm.size();
  for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{1001}}) {
    for (bool inside : {false, true}) {
      std::vector<float> mine = Fill(comm.rank(), k, salt);
      std::vector<float> out(p * k, -99.0f);
      Tensor in = Host(mine);
      if (inside) {  // the distributed optimizer's pattern: this rank's shard already in place
        std::copy(mine.begin(), mine.end(), out.begin() + comm.rank() * k);
        in = Host(out).FlatView(comm.rank() * k, k);
      }
      ASSERT_TRUE(comm.AllGather(in, Host(out)).ok());
      for (int r = 0; r < p; ++r) {
        for (int64_t i = 0; i < k; ++i) {
          ASSERT_EQ(out[r * k + i], Value(r, i, salt)) << comm.Describe() << " from " << r;
        }
      }
    }
  }
  // Unequal counts: rank r gives 2r + 1 elements (some groups' totals do not divide evenly).
  std::vector<int64_t> counts(p);
  for (int r = 0; r < p; ++r) counts[r] = 2 * r + 1;
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  std::vector<float> mine = Fill(comm.rank(), counts[comm.rank()], salt);
  std::vector<float> out(total, -99.0f);
  ASSERT_TRUE(comm.AllGatherV(Host(mine), Host(out), counts).ok());
  int64_t at = 0;
  for (int r = 0; r < p; ++r) {
    for (int64_t i = 0; i < counts[r]; ++i) ASSERT_EQ(out[at + i], Value(r, i, salt));
    at += counts[r];
  }
}

void CheckBroadcast(Communicator& comm, int salt) {
  for (int root = 0; root < comm.size(); ++root) {
    std::vector<float> data = Fill(comm.rank(), 1001, salt);
    ASSERT_TRUE(comm.Broadcast(Host(data), root).ok());
    for (int64_t i = 0; i < 1001; ++i) ASSERT_EQ(data[i], Value(root, i, salt));
  }
}

// Every rank sends to its right neighbour and receives from its left one in one batch, then
// the other way round with two messages per direction: the pattern of pipeline neighbours.
void CheckSendRecv(Communicator& comm, int salt) {
  const int p = comm.size(), r = comm.rank();
  const int right = (r + 1) % p, left = (r + p - 1) % p;
  std::vector<float> send = Fill(r, 777, salt), recv(777, -99.0f);
  std::vector<P2POp> ops = {{P2POp::kSend, Host(send), right}, {P2POp::kRecv, Host(recv), left}};
  ASSERT_TRUE(comm.BatchSendRecv(ops).ok());
  for (int64_t i = 0; i < 777; ++i) ASSERT_EQ(recv[i], Value(left, i, salt));
  std::vector<float> a = Fill(r, 5, salt + 1), b = Fill(r, 9, salt + 2);
  std::vector<float> ra(5), rb(9);
  std::vector<P2POp> back = {{P2POp::kRecv, Host(ra), right},
                             {P2POp::kSend, Host(a), left},
                             {P2POp::kRecv, Host(rb), right},
                             {P2POp::kSend, Host(b), left}};
  ASSERT_TRUE(comm.BatchSendRecv(back).ok());
  for (int64_t i = 0; i < 5; ++i) ASSERT_EQ(ra[i], Value(right, i, salt + 1));
  for (int64_t i = 0; i < 9; ++i) ASSERT_EQ(rb[i], Value(right, i, salt + 2));
  if (p > 1) {  // plain Send / Recv: rank 0 to the last rank
    std::vector<float> x = Fill(r, 33, salt + 3);
    if (r == 0) ASSERT_TRUE(comm.Send(Host(x), p - 1).ok());
    if (r == p - 1) {
      ASSERT_TRUE(comm.Recv(Host(x), 0).ok());
      for (int64_t i = 0; i < 33; ++i) ASSERT_EQ(x[i], Value(0, i, salt + 3));
    }
  }
}

void CheckAll(Communicator& comm, int salt) {
  SCOPED_TRACE(comm.Describe());
  CheckAllReduce(comm, salt);
  CheckReduceScatter(comm, salt);
  CheckAllGather(comm, salt);
  CheckBroadcast(comm, salt);
  CheckSendRecv(comm, salt);
  std::vector<double> host = {comm.rank() + 0.5, 1.0};
  ASSERT_TRUE(comm.AllReduceHost(absl::MakeSpan(host), ReduceOp::kSum).ok());
  ASSERT_DOUBLE_EQ(host[0], comm.size() * (comm.size() - 1) / 2.0 + 0.5 * comm.size());
  ASSERT_DOUBLE_EQ(host[1], comm.size());
  ASSERT_TRUE(comm.Barrier().ok());
}

TEST(CommunicatorTest, WorldCollectivesMatchReference) { CheckAll(TheWorld().comm(), 0); }

TEST(CommunicatorTest, AsyncWorkCompletesAndTestPolls) {
  Communicator& comm = TheWorld().comm();
  std::vector<float> a = Fill(comm.rank(), 4099), b = Fill(comm.rank(), 1001, 1);
  auto wa = comm.AllReduceAsync(Host(a), ReduceOp::kSum);
  auto wb = comm.AllReduceAsync(Host(b), ReduceOp::kMax);
  ASSERT_TRUE(wa.ok() && wb.ok());
  while (true) {  // poll the second while the first is outstanding, as overlap code does
    auto done = (*wb)->Test();
    ASSERT_TRUE(done.ok());
    if (*done) break;
  }
  ASSERT_TRUE((*wa)->Wait().ok());
  ASSERT_TRUE((*wb)->Wait().ok());  // a second wait is a no-op
  float sum = 0;
  for (int r = 0; r < comm.size(); ++r) sum += Value(r, 10);
  EXPECT_FLOAT_EQ(a[10], sum);
}

TEST(CommunicatorTest, BadCallsAreRefusedBeforeAnythingIsPosted) {
  Communicator& comm = TheWorld().comm();
  std::vector<float> in(comm.size() * 3 + 1), out(3);
  auto s = comm.ReduceScatter(Host(in), Host(out), ReduceOp::kSum);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("reduce_scatter"), std::string::npos) << s;
  EXPECT_NE(s.message().find("world"), std::string::npos) << s;
  std::vector<float> t(4);
  s = comm.Broadcast(Host(t), comm.size());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  if (comm.size() > 1) {
    std::vector<int32_t> ints(2);
    std::vector<uint16_t> halves(2);
    Tensor h = Tensor::View(halves.data(), Shape{2}, DType::kBF16, CpuDevice());
    s = comm.AllReduce(h, ReduceOp::kSum);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("bf16"), std::string::npos) << s;
  }
  // The job is still in step after the refusals: a collective now matches on every rank.
  ASSERT_TRUE(comm.Barrier().ok());
}

TEST(CommunicatorTest, GridSubGroupsMatchReference) {
  World& world = TheWorld();
  if (world.size() != 8) GTEST_SKIP() << "the grid test runs at 8 ranks";
  auto grid = RankGrid::Create(8, 2, 2, 2);
  ASSERT_TRUE(grid.ok());
  auto groups = ProcessGroups::Create(world, *grid);
  ASSERT_TRUE(groups.ok()) << groups.status();
  int salt = 1;
  for (GroupKind kind : kAllGroupKinds) {
    Communicator& c = (*groups)->group(kind);
    EXPECT_EQ(c.world_ranks(), grid->Group(kind, world.rank()));
    EXPECT_EQ(c.world_ranks()[c.rank()], world.rank());
    CheckAll(c, salt++);
  }
}

}  // namespace
}  // namespace loom

// main: tests/mpi_test_main.cc
