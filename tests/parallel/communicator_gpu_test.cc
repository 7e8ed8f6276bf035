// The NCCL backend of Communicator on CUDA tensors: the checks of communicator_test.cc (each
// result against a reference every rank computes from the same formula, never through the
// communicator) in f32, bf16 and f16 (and i32 for sum and max), at any world size with one GPU
// per rank (ctest runs it at 1; under mpirun on a multi-GPU machine it runs at any size).
//
// At world size 1 a Communicator never calls its backend (a group of one has nothing to move),
// so every check also runs straight on an NCCL backend over the world's ranks: at size 1 that
// still drives NCCL (a one-rank communicator, sends to itself). The results are read back with
// ordinary copies on the ops' stream right after Wait(), which never blocks the host: that the
// values are right proves Wait ordered the ops' stream after the transfer.
//
// Also: the keep-alive promise (a CommWork holds its tensor's block until waited, so the
// allocator cannot hand it out under a transfer) and the deadline (an operation held back past
// CommState::timeout is reported by the next Wait/Test naming it, without a hang).
#include <cuda_runtime.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "ops/cuda/context.h"
#include "parallel/communicator.h"
#include "parallel/mpi_backend.h"
#include "parallel/nccl_backend.h"
#include "parallel/world.h"
#include "runtime/cuda_device_choice.h"
#include "tests/ops/gpu_test_util.h"

namespace loom {
namespace {

World& TheWorld() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return **w;
}

// This rank's GPU (as the trainer chooses it: runtime/cuda_device_choice.h), or why there is
// none to test on.
absl::StatusOr<Device*> MyGpu() {
  World& w = TheWorld();
  if (CudaDeviceCount() == 0) return absl::UnavailableError(CudaUnavailableReason());
  if (CudaDeviceCount() > 1 && CudaDeviceCount() < w.local_size()) {
    return absl::UnavailableError(absl::StrCat(w.local_size(), " ranks on this node but ",
                                               CudaDeviceCount(), " GPU(s): one GPU per rank"));
  }
  auto index = ChooseCudaDevice(LocalPlacement{w.local_rank(), w.local_size()}, CudaDeviceCount(),
                                CudaUnavailableReason());
  if (!index.ok()) return index.status();
  return CudaDevice(*index);
}

#define LOOM_GPU_OR_SKIP(dev)                                          \
  auto dev##_or = MyGpu();                                             \
  if (!dev##_or.ok()) GTEST_SKIP() << "no GPU: " << dev##_or.status(); \
  Device* dev = *dev##_or

float Value(int rank, int64_t i, int salt = 0) {
  return static_cast<float>(((rank + 1) * 7 + i * 3 + salt * 5) % 23) - 11.0f;
}

std::vector<float> Fill(int rank, int64_t n, int salt = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = Value(rank, i, salt);
  return v;
}

// How far an average may be from the exact one: NCCL scales before summing (ncclAvg), so the
// last bits differ from sum-then-divide; sums and maxima of these small integers are exact in
// every dtype tested.
float AvgTolerance(DType dt) {
  return dt == DType::kBF16 ? 0.1f : dt == DType::kF16 ? 0.02f : 1e-5f;
}

// The calls the checks make: on a Communicator, or straight on a backend (then each call is
// the backend's asynchronous form followed by Wait).
class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string Describe() const = 0;
  virtual absl::Status AllReduce(const Tensor& t, ReduceOp op) = 0;
  virtual absl::Status ReduceScatter(const Tensor& in, const Tensor& out, ReduceOp op) = 0;
  virtual absl::Status AllGatherV(const Tensor& in, const Tensor& out,
                                  const std::vector<int64_t>& counts) = 0;
  virtual absl::Status Broadcast(const Tensor& t, int root) = 0;
  virtual absl::Status BatchSendRecv(const std::vector<P2POp>& ops) = 0;
};

class CommGroup : public Group {
 public:
  explicit CommGroup(Communicator& c) : c_(c) {}
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  std::string Describe() const override { return c_.Describe(); }
  absl::Status AllReduce(const Tensor& t, ReduceOp op) override { return c_.AllReduce(t, op); }
  absl::Status ReduceScatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    return c_.ReduceScatter(in, out, op);
  }
  absl::Status AllGatherV(const Tensor& in, const Tensor& out,
                          const std::vector<int64_t>& counts) override {
    return c_.AllGatherV(in, out, counts);
  }
  absl::Status Broadcast(const Tensor& t, int root) override { return c_.Broadcast(t, root); }
  absl::Status BatchSendRecv(const std::vector<P2POp>& ops) override {
    return c_.BatchSendRecv(ops);
  }

 private:
  Communicator& c_;
};

absl::Status WaitFor(absl::StatusOr<std::unique_ptr<CommWork>> w) {
  if (!w.ok()) return w.status();
  return (*w)->Wait();
}

class BackendGroup : public Group {
 public:
  BackendGroup(std::unique_ptr<CommBackend> b, int rank, int size)
      : b_(std::move(b)), rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string Describe() const override { return absl::StrCat("nccl backend of ", size_); }
  CommBackend& backend() { return *b_; }
  absl::Status AllReduce(const Tensor& t, ReduceOp op) override {
    return WaitFor(b_->AllReduce(t, op, absl::StrCat("all_reduce(", ReduceOpName(op), ") test")));
  }
  absl::Status ReduceScatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    return WaitFor(b_->ReduceScatter(in, out, op, "reduce_scatter test"));
  }
  absl::Status AllGatherV(const Tensor& in, const Tensor& out,
                          const std::vector<int64_t>& counts) override {
    return WaitFor(b_->AllGatherV(in, out, counts, "all_gather test"));
  }
  absl::Status Broadcast(const Tensor& t, int root) override {
    return WaitFor(b_->Broadcast(t, root, "broadcast test"));
  }
  absl::Status BatchSendRecv(const std::vector<P2POp>& ops) override {
    return WaitFor(b_->BatchSendRecv(ops, "send_recv test"));
  }

 private:
  std::unique_ptr<CommBackend> b_;
  int rank_, size_;
};

// An NCCL backend over all ranks of the world (a second NCCL communicator beside the world's).
std::unique_ptr<BackendGroup> WorldBackend(Device* gpu) {
  World& w = TheWorld();
  auto handle = std::make_shared<MpiCommHandle>();
  handle->comm = MPI_COMM_WORLD;  // not owned
  auto b = MakeNcclBackend(handle, w.state(), gpu);
  EXPECT_TRUE(b.ok()) << b.status();
  if (!b.ok()) return nullptr;
  return std::make_unique<BackendGroup>(*std::move(b), w.rank(), w.size());
}

Tensor Dev(const std::vector<float>& v, DType dt, Device* gpu) {
  return testing::MakeTensor(v, Shape{static_cast<int64_t>(v.size())}, dt, gpu);
}

std::vector<float> Back(const Tensor& t) { return testing::HostValues(t); }

const int64_t kSizes[] = {1, 5, 7, 1001, 4099};

void CheckAllReduce(Group& g, DType dt, Device* gpu, int salt) {
  std::vector<ReduceOp> ops = {ReduceOp::kSum, ReduceOp::kMax};
  if (dt != DType::kI32) ops.push_back(ReduceOp::kAvg);
  for (int64_t n : kSizes) {
    for (ReduceOp op : ops) {
      Tensor t = Dev(Fill(g.rank(), n, salt), dt, gpu);
      ASSERT_TRUE(g.AllReduce(t, op).ok());
      std::vector<float> got = Back(t);
      for (int64_t i = 0; i < n; ++i) {
        float sum = 0, mx = -1e30f;
        for (int r = 0; r < g.size(); ++r) {
          sum += Value(r, i, salt);
          mx = std::max(mx, Value(r, i, salt));
        }
        const std::string where = absl::StrCat(g.Describe(), " ", std::string(DTypeName(dt)), " ",
                                               ReduceOpName(op), " n=", n, " i=", i);
        if (op == ReduceOp::kAvg) {
          ASSERT_NEAR(got[i], sum / g.size(), AvgTolerance(dt)) << where;
        } else {
          ASSERT_EQ(got[i], op == ReduceOp::kSum ? sum : mx) << where;
        }
      }
    }
  }
}

void CheckReduceScatter(Group& g, DType dt, Device* gpu, int salt) {
  const int p = g.size();
  for (int64_t k : {int64_t{1}, int64_t{3}, int64_t{1001}}) {
    // apart: separate output; inside: the output is this rank's block of the input (NCCL's
    // in place); shifted: the output overlaps the input elsewhere (through a temporary).
    for (const char* layout : {"apart", "inside", "shifted"}) {
      const std::string name = layout;
      std::vector<float> in_values = Fill(g.rank(), p * k, salt);
      Tensor in, out;
      if (name == "apart") {
        in = Dev(in_values, dt, gpu);
        out = Dev(std::vector<float>(k, -99.0f), dt, gpu);
      } else if (name == "inside") {
        in = Dev(in_values, dt, gpu);
        out = in.FlatView(g.rank() * k, k);
      } else {
        std::vector<float> big = {-99.0f};
        big.insert(big.end(), in_values.begin(), in_values.end());
        Tensor buf = Dev(big, dt, gpu);
        in = buf.FlatView(1, p * k);
        out = buf.FlatView(0, k);
      }
      ASSERT_TRUE(g.ReduceScatter(in, out, ReduceOp::kSum).ok());
      std::vector<float> got = Back(out);
      for (int64_t i = 0; i < k; ++i) {
        float sum = 0;
        for (int r = 0; r < p; ++r) sum += Value(r, g.rank() * k + i, salt);
        ASSERT_EQ(got[i], sum) << g.Describe() << " " << std::string(DTypeName(dt)) << " k=" << k
                               << " " << name << " i=" << i;
      }
    }
  }
}

void CheckAllGather(Group& g, DType dt, Device* gpu, int salt) {
  const int p = g.size();
  for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{1001}}) {
    for (const char* layout : {"apart", "inside", "shifted"}) {
      const std::string name = layout;
      std::vector<float> mine = Fill(g.rank(), k, salt);
      Tensor in, out;
      if (name == "apart") {
        in = Dev(mine, dt, gpu);
        out = Dev(std::vector<float>(p * k, -99.0f), dt, gpu);
      } else if (name == "inside") {  // this rank's shard already in place
        std::vector<float> all(p * k, -99.0f);
        std::copy(mine.begin(), mine.end(), all.begin() + g.rank() * k);
        out = Dev(all, dt, gpu);
        in = out.FlatView(g.rank() * k, k);
      } else {
        // The input overlaps the output one element in: never this rank's block (k > 1), so
        // NCCL cannot take it in place. (The skip depends on k alone: every rank skips.)
        if (k == 1) continue;
        std::vector<float> all(std::max(p * k, k + 1), -99.0f);
        std::copy(mine.begin(), mine.end(), all.begin() + 1);
        Tensor buf = Dev(all, dt, gpu);
        in = buf.FlatView(1, k);
        out = buf.FlatView(0, p * k);
      }
      ASSERT_TRUE(g.AllGatherV(in, out, std::vector<int64_t>(p, k)).ok());
      std::vector<float> got = Back(out);
      for (int r = 0; r < p; ++r) {
        for (int64_t i = 0; i < k; ++i) {
          ASSERT_EQ(got[r * k + i], Value(r, i, salt))
              << g.Describe() << " " << std::string(DTypeName(dt)) << " " << name << " from " << r;
        }
      }
    }
  }
  // Unequal counts: rank r gives 2r + 1 elements (one NCCL broadcast per member).
  std::vector<int64_t> counts(p);
  for (int r = 0; r < p; ++r) counts[r] = 2 * r + 1;
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  Tensor in = Dev(Fill(g.rank(), counts[g.rank()], salt), dt, gpu);
  Tensor out = Dev(std::vector<float>(total, -99.0f), dt, gpu);
  ASSERT_TRUE(g.AllGatherV(in, out, counts).ok());
  std::vector<float> got = Back(out);
  int64_t at = 0;
  for (int r = 0; r < p; ++r) {
    for (int64_t i = 0; i < counts[r]; ++i) ASSERT_EQ(got[at + i], Value(r, i, salt));
    at += counts[r];
  }
}

void CheckBroadcast(Group& g, DType dt, Device* gpu, int salt) {
  for (int root = 0; root < g.size(); ++root) {
    Tensor t = Dev(Fill(g.rank(), 1001, salt), dt, gpu);
    ASSERT_TRUE(g.Broadcast(t, root).ok());
    std::vector<float> got = Back(t);
    for (int64_t i = 0; i < 1001; ++i) ASSERT_EQ(got[i], Value(root, i, salt));
  }
}

// Right neighbour / left neighbour in one batch, then two messages per direction the other
// way round (at size 1 every peer is this rank itself).
void CheckSendRecv(Group& g, DType dt, Device* gpu, int salt) {
  const int p = g.size(), r = g.rank();
  const int right = (r + 1) % p, left = (r + p - 1) % p;
  Tensor send = Dev(Fill(r, 777, salt), dt, gpu);
  Tensor recv = Dev(std::vector<float>(777, -99.0f), dt, gpu);
  ASSERT_TRUE(g.BatchSendRecv({{P2POp::kSend, send, right}, {P2POp::kRecv, recv, left}}).ok());
  std::vector<float> got = Back(recv);
  for (int64_t i = 0; i < 777; ++i) ASSERT_EQ(got[i], Value(left, i, salt));
  Tensor a = Dev(Fill(r, 5, salt + 1), dt, gpu), b = Dev(Fill(r, 9, salt + 2), dt, gpu);
  Tensor ra = Dev(std::vector<float>(5, 0.0f), dt, gpu);
  Tensor rb = Dev(std::vector<float>(9, 0.0f), dt, gpu);
  ASSERT_TRUE(g.BatchSendRecv({{P2POp::kRecv, ra, right},
                               {P2POp::kSend, a, left},
                               {P2POp::kRecv, rb, right},
                               {P2POp::kSend, b, left}})
                  .ok());
  std::vector<float> ga = Back(ra), gb = Back(rb);
  for (int64_t i = 0; i < 5; ++i) ASSERT_EQ(ga[i], Value(right, i, salt + 1));
  for (int64_t i = 0; i < 9; ++i) ASSERT_EQ(gb[i], Value(right, i, salt + 2));
}

void CheckAll(Group& g, DType dt, Device* gpu, int salt) {
  SCOPED_TRACE(absl::StrCat(g.Describe(), " ", std::string(DTypeName(dt))));
  CheckAllReduce(g, dt, gpu, salt);
  if (dt == DType::kI32) return;  // the copies move bytes: one float type covers them
  CheckReduceScatter(g, dt, gpu, salt);
  CheckAllGather(g, dt, gpu, salt);
  CheckBroadcast(g, dt, gpu, salt);
  CheckSendRecv(g, dt, gpu, salt);
}

const DType kTypes[] = {DType::kF32, DType::kBF16, DType::kF16, DType::kI32};

TEST(CommunicatorGpuTest, WorldCollectivesMatchReference) {
  LOOM_GPU_OR_SKIP(gpu);
  World& w = TheWorld();
  ASSERT_TRUE(w.UseCuda(gpu).ok());
  ASSERT_TRUE(w.comm().has_nccl());
  CommGroup g(w.comm());
  int salt = 0;
  for (DType dt : kTypes) CheckAll(g, dt, gpu, salt++);
  // Host scalars still travel over MPI when the communicator has NCCL.
  std::vector<double> host = {w.rank() + 0.5, 1.0};
  ASSERT_TRUE(w.comm().AllReduceHost(absl::MakeSpan(host), ReduceOp::kSum).ok());
  EXPECT_DOUBLE_EQ(host[1], w.size());
  ASSERT_TRUE(w.comm().Barrier().ok());
}

TEST(CommunicatorGpuTest, NcclBackendMatchesReference) {
  LOOM_GPU_OR_SKIP(gpu);
  auto g = WorldBackend(gpu);
  ASSERT_NE(g, nullptr);
  int salt = 5;
  for (DType dt : kTypes) CheckAll(*g, dt, gpu, salt++);
  ASSERT_TRUE(g->backend().Barrier("barrier test").ok());
}

TEST(CommunicatorGpuTest, SplitGroupsGetNccl) {
  LOOM_GPU_OR_SKIP(gpu);
  World& w = TheWorld();
  ASSERT_TRUE(w.UseCuda(gpu).ok());
  // Even and odd ranks: two groups that partition the world.
  std::vector<int> members;
  for (int r = w.rank() % 2; r < w.size(); r += 2) members.push_back(r);
  auto c = w.Split(w.rank() % 2 ? "odd" : "even", members);
  ASSERT_TRUE(c.ok()) << c.status();
  // A group of one moves nothing and gets no NCCL communicator (its buffers cost GPU memory);
  // larger groups get one.
  ASSERT_EQ((*c)->has_nccl(), members.size() > 1);
  if (members.size() == 1) return;
  CommGroup g(**c);
  CheckAll(g, DType::kF32, gpu, 9);
}

TEST(CommunicatorGpuTest, AsyncWorkKeepsItsTensorUntilWaited) {
  LOOM_GPU_OR_SKIP(gpu);
  auto g = WorldBackend(gpu);
  ASSERT_NE(g, nullptr);
  const int64_t n = 1 << 20;
  void* block = nullptr;
  std::unique_ptr<CommWork> work;
  {
    Tensor t = Dev(Fill(g->rank(), n), DType::kF32, gpu);
    block = t.data();
    auto w = g->backend().AllReduce(t, ReduceOp::kSum, "all_reduce(sum) keep-alive test");
    ASSERT_TRUE(w.ok()) << w.status();
    work = *std::move(w);
  }  // the caller's handle is gone; the work's is not
  auto other = Tensor::Empty(Shape{n}, DType::kF32, gpu);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->data(), block) << "the allocator handed out a block a transfer still uses";
  ASSERT_TRUE(work->Wait().ok());
  work.reset();
  // After Wait the block is the allocator's again (it goes to the next request of its size).
  auto again = Tensor::Empty(Shape{n}, DType::kF32, gpu);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->data(), block);

  // Test() polls while another operation is outstanding, as overlap code does.
  Tensor a = Dev(Fill(g->rank(), 4099), DType::kF32, gpu);
  Tensor b = Dev(Fill(g->rank(), 1001, 1), DType::kF32, gpu);
  auto wa = g->backend().AllReduce(a, ReduceOp::kSum, "a");
  auto wb = g->backend().AllReduce(b, ReduceOp::kMax, "b");
  ASSERT_TRUE(wa.ok() && wb.ok());
  while (true) {
    auto done = (*wb)->Test();
    ASSERT_TRUE(done.ok()) << done.status();
    if (*done) break;
  }
  ASSERT_TRUE((*wa)->Wait().ok());
  ASSERT_TRUE((*wb)->Wait().ok());  // a second wait is a no-op
  float sum = 0;
  for (int r = 0; r < g->size(); ++r) sum += Value(r, 10);
  EXPECT_EQ(Back(a)[10], sum);
}

void SleepOnStream(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(reinterpret_cast<intptr_t>(ms)));
}

TEST(CommunicatorGpuTest, OperationHeldPastItsDeadlineIsReportedAtTheNextWait) {
  LOOM_GPU_OR_SKIP(gpu);
  auto g = WorldBackend(gpu);
  ASSERT_NE(g, nullptr);
  World& w = TheWorld();
  const absl::Duration saved = w.state()->timeout;
  w.state()->timeout = absl::Milliseconds(500);
  // Hold the ops' stream for 2.5 s: a transfer issued now waits for it, so it cannot complete
  // within its 0.5 s deadline, as if a peer had stalled; afterwards it completes normally.
  // (Tensors are made first: their uploads would wait for the held stream.)
  Tensor t = Dev(Fill(g->rank(), 4099), DType::kF32, gpu);
  Tensor u = Dev(Fill(g->rank(), 33), DType::kF32, gpu);
  Tensor v = Dev(Fill(g->rank(), 7), DType::kF32, gpu);
  auto ctx = ops::cuda::GetDeviceContext(gpu->index());
  ASSERT_TRUE(ctx.ok());
  ASSERT_EQ(cudaLaunchHostFunc((*ctx)->stream, SleepOnStream, reinterpret_cast<void*>(2500)),
            cudaSuccess);
  auto stuck = g->backend().AllReduce(t, ReduceOp::kSum, "all_reduce(sum) of the held tensor");
  ASSERT_TRUE(stuck.ok());
  // Wait does not block: within the deadline it just orders the ops' stream.
  ASSERT_TRUE((*stuck)->Wait().ok());
  auto later = g->backend().AllReduce(u, ReduceOp::kSum, "all_reduce(sum) issued later");
  ASSERT_TRUE(later.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  absl::Status s = (*later)->Wait();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("all_reduce(sum) of the held tensor did not complete within"),
            std::string::npos)
      << s;
  EXPECT_NE(s.message().find("runtime.collective_timeout_s"), std::string::npos) << s;
  // Test reports it too; Barrier blocks and gives up at its own deadline.
  auto third = g->backend().AllReduce(v, ReduceOp::kSum, "all_reduce(sum) polled");
  ASSERT_TRUE(third.ok());
  auto polled = (*third)->Test();
  EXPECT_EQ(polled.status().code(), absl::StatusCode::kDeadlineExceeded) << polled.status();
  absl::Status b = g->backend().Barrier("barrier behind the held stream");
  EXPECT_EQ(b.code(), absl::StatusCode::kDeadlineExceeded) << b;
  // Once the stream runs again everything completes and waits succeed.
  ASSERT_TRUE(gpu->Synchronize().ok());
  w.state()->timeout = saved;
  auto fine = g->backend().AllReduce(u, ReduceOp::kSum, "all_reduce(sum) after the hold");
  ASSERT_TRUE(fine.ok());
  EXPECT_TRUE((*fine)->Wait().ok());
  std::vector<float> got = Back(t);
  float sum = 0;
  for (int r = 0; r < g->size(); ++r) sum += Value(r, 3);
  EXPECT_EQ(got[3], sum);
}

TEST(CommunicatorGpuTest, BadCallsAreRefused) {
  LOOM_GPU_OR_SKIP(gpu);
  auto g = WorldBackend(gpu);
  ASSERT_NE(g, nullptr);
  Tensor halves = *Tensor::Zeros(Shape{4}, DType::kU16, gpu);
  auto s = g->backend().AllReduce(halves, ReduceOp::kSum, "all_reduce(sum) of u16");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  EXPECT_NE(s.status().message().find("u16"), std::string::npos) << s.status();
  std::vector<float> host(4);
  Tensor cpu = Tensor::View(host.data(), Shape{4}, DType::kF32, CpuDevice());
  s = g->backend().Broadcast(cpu, 0, "broadcast of a CPU tensor");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  EXPECT_NE(s.status().message().find("cpu"), std::string::npos) << s.status();
  // Nothing was posted: a collective now matches on every rank.
  ASSERT_TRUE(g->backend().Barrier("barrier after refusals").ok());
}

}  // namespace
}  // namespace loom

// Exits 77 (ctest: Skipped, SKIP_RETURN_CODE of loom_add_mpi_run ... GPU), on every rank,
// when no CUDA device answers or every test skipped itself, so that a run that tested nothing
// is never counted as passed. The decision is agreed over the world (the worst code wins).
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = loom::World::Get();
  if (!world.ok()) return 1;
  constexpr int kSkipped = 77;
  int rc = 0;
  if (!GTEST_FLAG_GET(list_tests) && loom::CudaDeviceCount() == 0) {
    std::printf("SKIPPED: %s; none of this binary's %d tests ran\n",
                loom::CudaUnavailableReason().c_str(),
                ::testing::UnitTest::GetInstance()->total_test_count());
    rc = kSkipped;
  } else {
    // A failed assertion on one rank leaves its peers waiting in the next collective: a short
    // deadline turns that into an error instead of a five-minute hang.
    (*world)->state()->timeout = absl::Seconds(30);
    rc = RUN_ALL_TESTS();
    const ::testing::UnitTest& u = *::testing::UnitTest::GetInstance();
    if (rc == 0 && u.test_to_run_count() > 0 && u.skipped_test_count() == u.test_to_run_count()) {
      std::printf("SKIPPED: all %d tests skipped themselves\n", u.skipped_test_count());
      rc = kSkipped;
    }
  }
  // Failures (1) win over skips (77) only if they are the larger code; make failure explicit.
  int failed = rc != 0 && rc != kSkipped, skipped = rc == kSkipped;
  int any_failed = failed, all_skipped = skipped;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&skipped, &all_skipped, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (any_failed) return 1;
  return all_skipped ? kSkipped : 0;
}
