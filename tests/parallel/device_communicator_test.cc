// Communicators on device tensors, on the test device (runtime/test_device.h) through its stream
// backend (parallel/test_comm_backend.h): the path a GPU's tensors take through NCCL. Run under
// mpirun at 1, 2 and 3 ranks (label gpu_path; the multi-rank main is tests/mpi_test_main.cc).
// Checks:
// - a group of one rank needs no device backend (the world-size-1 defect of issue 18: every
//   operation on a device tensor was refused before the size() == 1 shortcut);
// - every collective's numbers against a reference computed without communication;
// - the ordering events: a collective sees what a slow kernel queued before it wrote, and work
//   queued after Wait sees the collective's result, although the host never blocked.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/communicator.h"
#include "parallel/mpi_backend.h"
#include "parallel/process_groups.h"
#include "parallel/rank_grid.h"
#include "parallel/world.h"
#include "runtime/test_device.h"

namespace loom {
namespace {

World& TheWorld() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return **w;
}

Device* MyDevice() {
  auto d = TestDevice(TheWorld().local_rank());
  EXPECT_TRUE(d.ok()) << d.status();
  return *d;
}

float Value(int rank, int64_t i, int salt = 0) {
  return static_cast<float>(((rank + 1) * 7 + i * 3 + salt * 5) % 23) - 11.0f;
}

std::vector<float> Fill(int rank, int64_t n, int salt = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = Value(rank, i, salt);
  return v;
}

Tensor OnDevice(const std::vector<float>& v) {
  Tensor t = *Tensor::Empty(Shape{static_cast<int64_t>(v.size())}, DType::kF32, MyDevice());
  EXPECT_TRUE(t.CopyFromFloats(v).ok());
  return t;
}

std::vector<float> Read(const Tensor& t) {
  auto v = t.ToFloatVector();
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::vector<float>();
}

// The world-size-1 defect: a communicator of one rank with no device backend (what the trainer
// makes for a world of one, and for every group of one rank) must serve device tensors.
TEST(DeviceCommunicator, GroupOfOneNeedsNoDeviceBackend) {
  auto self = std::make_shared<MpiCommHandle>();
  self->comm = MPI_COMM_SELF;
  auto state = std::make_shared<CommState>();
  Communicator one("tp", {TheWorld().rank()}, 0, state, MakeMpiBackend(self, state));
  ASSERT_FALSE(one.has_device_backend());
  Tensor t = OnDevice({1, 2, 3, 4});
  EXPECT_TRUE(one.AllReduce(t, ReduceOp::kSum).ok());
  EXPECT_EQ(Read(t), (std::vector<float>{1, 2, 3, 4}));
  Tensor out = OnDevice({0, 0, 0, 0});
  ASSERT_TRUE(one.ReduceScatter(t, out, ReduceOp::kSum).ok());
  EXPECT_EQ(Read(out), Read(t));
  Tensor gathered = OnDevice({0, 0, 0, 0});
  ASSERT_TRUE(one.AllGather(t, gathered).ok());
  EXPECT_EQ(Read(gathered), Read(t));
  ASSERT_TRUE(one.Broadcast(t, 0).ok());
  Tensor recv = OnDevice({0, 0, 0, 0});
  const P2POp ops[] = {{P2POp::kSend, t, 0}, {P2POp::kRecv, recv, 0}};
  ASSERT_TRUE(one.BatchSendRecv(ops).ok());
  EXPECT_EQ(Read(recv), Read(t));
  // A group of two without a backend still refuses, naming the device.
  if (TheWorld().size() > 1) {
    Communicator two("dp", {0, 1}, TheWorld().rank() == 0 ? 0 : 1, state,
                     MakeMpiBackend(self, state));
    absl::Status s = two.AllReduce(t, ReduceOp::kSum);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("test:"), std::string::npos) << s;
  }
}

// The groups of a rank grid get a device backend only where they carry device tensors and have
// more than one rank: tp (here all ranks), dp and pp (one rank each here), not the model group,
// which carries host scalars only. (Before the world has a device: UseCuda comes below.)
TEST(DeviceCommunicator, OnlyGroupsCarryingDeviceTensorsGetABackend) {
  World& w = TheWorld();
  ASSERT_EQ(w.cuda(), nullptr);
  auto grid = RankGrid::Create(w.size(), /*tp=*/w.size(), /*dp=*/1, /*pp=*/1);
  ASSERT_TRUE(grid.ok()) << grid.status();
  auto groups = ProcessGroups::Create(w, *grid, MyDevice());
  ASSERT_TRUE(groups.ok()) << groups.status();
  for (GroupKind kind : kAllGroupKinds) {
    const Communicator& c = (*groups)->group(kind);
    EXPECT_EQ(c.has_device_backend(), kind != GroupKind::kModel && c.size() > 1) << c.Describe();
  }
  // The tp group's backend carries device tensors.
  Tensor t = OnDevice({1, 2});
  ASSERT_TRUE((*groups)->tp().AllReduce(t, ReduceOp::kSum).ok());
  EXPECT_EQ(Read(t), (std::vector<float>{1.0f * w.size(), 2.0f * w.size()}));
}

class OnTestDevice : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(TheWorld().UseCuda(MyDevice()).ok()); }
  Communicator& comm() { return TheWorld().comm(); }
};

TEST_F(OnTestDevice, CollectivesMatchTheReference) {
  Communicator& c = comm();
  const int n = c.size(), me = c.rank();
  for (int64_t len : {1, 7, 1001}) {
    Tensor t = OnDevice(Fill(me, len));
    ASSERT_TRUE(c.AllReduce(t, ReduceOp::kSum).ok());
    std::vector<float> got = Read(t);
    for (int64_t i = 0; i < len; ++i) {
      float want = 0;
      for (int r = 0; r < n; ++r) want += Value(r, i);
      ASSERT_EQ(got[i], want) << "all_reduce len " << len << " i " << i;
    }
    // Reduce-scatter: block r of the sum to rank r.
    Tensor in = OnDevice(Fill(me, len * n, 1));
    Tensor out = OnDevice(std::vector<float>(len, 0));
    ASSERT_TRUE(c.ReduceScatter(in, out, ReduceOp::kSum).ok());
    got = Read(out);
    for (int64_t i = 0; i < len; ++i) {
      float want = 0;
      for (int r = 0; r < n; ++r) want += Value(r, me * len + i, 1);
      ASSERT_EQ(got[i], want) << "reduce_scatter";
    }
    // All-gather with unequal counts (rank r gives len + r).
    std::vector<int64_t> counts(n);
    for (int r = 0; r < n; ++r) counts[r] = len + r;
    Tensor mine = OnDevice(Fill(me, len + me, 2));
    Tensor all = OnDevice(std::vector<float>(std::accumulate(counts.begin(), counts.end(), 0L)));
    ASSERT_TRUE(c.AllGatherV(mine, all, counts).ok());
    got = Read(all);
    int64_t at = 0;
    for (int r = 0; r < n; ++r) {
      for (int64_t i = 0; i < counts[r]; ++i) ASSERT_EQ(got[at + i], Value(r, i, 2)) << "gather";
      at += counts[r];
    }
    Tensor b = OnDevice(Fill(me, len, 3));
    ASSERT_TRUE(c.Broadcast(b, n - 1).ok());
    got = Read(b);
    for (int64_t i = 0; i < len; ++i) ASSERT_EQ(got[i], Value(n - 1, i, 3)) << "broadcast";
  }
  if (n > 1) {
    // A ring: send to the next rank, receive from the previous one.
    Tensor s = OnDevice(Fill(me, 5, 4)), r = OnDevice(std::vector<float>(5, 0));
    const P2POp ops[] = {{P2POp::kSend, s, (me + 1) % n}, {P2POp::kRecv, r, (me + n - 1) % n}};
    ASSERT_TRUE(c.BatchSendRecv(ops).ok());
    std::vector<float> got = Read(r);
    for (int i = 0; i < 5; ++i) ASSERT_EQ(got[i], Value((me + n - 1) % n, i, 4));
  }
}

// The host issues a slow kernel, the collective and a kernel reading its result without ever
// waiting: only the events order them. A backend that skipped either event would all-reduce
// the old values or read the result before it arrived.
TEST_F(OnTestDevice, EventsOrderTheCollectiveAgainstTheOps) {
  Communicator& c = comm();
  Device* d = MyDevice();
  Tensor t = OnDevice({0, 0});
  Tensor seen = OnDevice({-1});
  ASSERT_TRUE(d->Synchronize().ok());
  const int me = c.rank(), n = c.size();
  const int64_t syncs = d->host_syncs();
  ASSERT_TRUE(EnqueueOnTestDevice(d, [t, me] {
                std::this_thread::sleep_for(std::chrono::milliseconds(150));
                t.data_as<float>()[0] = static_cast<float>(me + 1);
                t.data_as<float>()[1] = 1.0f;
                return absl::OkStatus();
              }).ok());
  auto work = c.AllReduceAsync(t, ReduceOp::kSum);
  ASSERT_TRUE(work.ok());
  ASSERT_TRUE((*work)->Wait().ok());  // orders the op stream; returns at once
  ASSERT_TRUE(EnqueueOnTestDevice(d, [t, seen] {
                seen.data_as<float>()[0] = t.data_as<float>()[0] * 10 + t.data_as<float>()[1];
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(d->host_syncs(), syncs);  // the host never waited
  const float want = static_cast<float>(n * (n + 1) / 2 * 10 + n);
  EXPECT_EQ(Read(seen)[0], want);
}

}  // namespace
}  // namespace loom
