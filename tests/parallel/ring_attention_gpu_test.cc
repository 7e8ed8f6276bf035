// Ring attention on CUDA (parallel/ring_attention.h over the NCCL backend, the CUDA block
// kernels of ops/cuda/attention_block.h): every rank of the world is one cp rank with its own
// GPU, holds its two chunks of the same sequences, and runs RingAttention::Forward and
// Backward on device tensors; its out, lse and dqkv must equal its rows of whole-sequence
// attention computed on the CPU (f32 to 1e-4, bf16 to 3e-2 on inputs rounded to bf16), for
// grouped-query heads at HD 64 and a padded HD of 18.
//
// ctest runs it at one rank (label gpu, gpu-check step a): the ring is then one block and no
// transfer (the block kernels, the buffers and the dK/dV hop to itself). Under mpirun with one
// GPU per rank (`mpirun -np 2 build/tests/ring_attention_gpu_test`) the blocks and the dK/dV
// accumulators travel over NCCL send/recv on the communication stream: that is the run that
// proves the ring on CUDA. Without a GPU it exits 77 (Skipped) on every rank.
//
// LOOM_GPU_TESTS_ON_TEST_DEVICE=1 runs the f32 cases on test devices (CPU kernels, the stream
// communicator backend) instead: a check of this harness on a machine without a GPU.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "ops/attention.h"
#include "parallel/ring_attention.h"
#include "parallel/world.h"
#include "runtime/cuda_device_choice.h"
#include "runtime/test_device.h"
#include "tests/ops/gpu_test_util.h"
#include "tests/ops/gradcheck.h"

namespace loom {
namespace {

using ::loom::testing::AllClose;
using ::loom::testing::HostValues;
using ::loom::testing::MakeTensor;
using ::loom::testing::RandomFloats;
using ::loom::testing::RoundTo;

bool OnTestDevice() {
  const char* env = std::getenv("LOOM_GPU_TESTS_ON_TEST_DEVICE");
  return env != nullptr && std::string(env) == "1";
}

World& TheWorld() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return **w;
}

// This rank's device: its GPU (as the trainer chooses it) or its test device; or why none.
absl::StatusOr<Device*> MyDevice() {
  World& w = TheWorld();
  if (OnTestDevice()) return TestDevice(w.local_rank() % TestDeviceCount());
  if (CudaDeviceCount() == 0) return absl::UnavailableError(CudaUnavailableReason());
  if (CudaDeviceCount() < w.local_size()) {
    return absl::UnavailableError(absl::StrCat(w.local_size(), " ranks on this node but ",
                                               CudaDeviceCount(),
                                               " GPU(s): NCCL needs one GPU per rank"));
  }
  auto index = ChooseCudaDevice(LocalPlacement{w.local_rank(), w.local_size()}, CudaDeviceCount(),
                                CudaUnavailableReason());
  if (!index.ok()) return index.status();
  return CudaDevice(*index);
}

// Rows of [b, t, w] (lse: [b * nh, t, 1]) that cp rank r holds: chunk r, then chunk 2cp-1-r.
std::vector<float> LocalRows(const std::vector<float>& full, int64_t b, int64_t t, int64_t w,
                             int cp, int r) {
  const int64_t c = t / (2 * cp);
  std::vector<float> out;
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t chunk : {int64_t{r}, int64_t{2 * cp - 1 - r}}) {
      const float* src = full.data() + (bi * t + chunk * c) * w;
      out.insert(out.end(), src, src + c * w);
    }
  }
  return out;
}

struct Heads {
  int nh, nkv, hd;
};

TEST(RingAttentionGpuTest, RingMatchesWholeSequenceAttention) {
  auto dev_or = MyDevice();
  if (!dev_or.ok()) GTEST_SKIP() << "no device: " << dev_or.status();
  Device* dev = *dev_or;
  World& world = TheWorld();
  ASSERT_TRUE(world.UseCuda(dev).ok());
  Communicator& comm = world.comm();  // the cp group: the whole world
  const int cp = comm.size(), r = comm.rank();
  const int64_t B = 2, S = 2 * cp * 96;  // chunks of 96: blocks of three 64-row tiles
  uint64_t seed = 900;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    if (dt != DType::kF32 && OnTestDevice()) continue;  // the test device runs f32 only
    const bool f32 = dt == DType::kF32;
    for (const Heads& k : {Heads{4, 2, 64}, Heads{3, 1, 18}}) {
      SCOPED_TRACE(::testing::Message() << (f32 ? "f32" : "bf16") << " cp " << cp << " nh " << k.nh
                                        << " nkv " << k.nkv << " hd " << k.hd);
      const int64_t W = static_cast<int64_t>(k.nh + 2 * k.nkv) * k.hd, O = int64_t{k.nh} * k.hd;
      const int64_t Tl = S / cp;
      // The same sequences on every rank; the reference on the CPU.
      const auto x = RoundTo(RandomFloats(B * S * W, ++seed, -2.0f, 2.0f), dt);
      const auto dy = RoundTo(RandomFloats(B * S * O, ++seed), dt);
      Tensor full_qkv = Tensor::FromVector(x, Shape{B, S, W});
      Tensor full_out = *Tensor::Zeros(Shape{B, S, O}, DType::kF32, CpuDevice());
      Tensor full_lse = *Tensor::Zeros(Shape{B, k.nh, S}, DType::kF32, CpuDevice());
      ASSERT_TRUE(ops::AttentionForward(full_qkv, k.nh, k.nkv, full_out, full_lse).ok());
      Tensor full_dqkv = *Tensor::Zeros(Shape{B, S, W}, DType::kF32, CpuDevice());
      ASSERT_TRUE(ops::AttentionBackward(Tensor::FromVector(dy, Shape{B, S, O}), full_qkv, full_out,
                                         full_lse, k.nh, k.nkv, full_dqkv)
                      .ok());

      const Shape qs{B, Tl, W}, os{B, Tl, O}, ls{B, k.nh, Tl};
      auto nan = [&](const Shape& s, DType type) {
        return MakeTensor(std::vector<float>(s.numel(), NAN), s, type, dev);
      };
      Tensor qkv = MakeTensor(LocalRows(x, B, S, W, cp, r), qs, dt, dev);
      Tensor dout = MakeTensor(LocalRows(dy, B, S, O, cp, r), os, dt, dev);
      Tensor out = nan(os, dt), lse = nan(ls, DType::kF32), dqkv = nan(qs, dt);
      const Tensor kv_buf[2] = {nan(qs, dt), nan(qs, dt)};
      const Tensor dkv_buf[3] = {nan(qs, dt), nan(qs, dt), nan(qs, dt)};
      RingAttention ring(&comm);
      ASSERT_TRUE(ring.Forward(qkv, k.nh, k.nkv, out, lse, kv_buf).ok());
      EXPECT_TRUE(AllClose(HostValues(out), LocalRows(HostValues(full_out), B, S, O, cp, r),
                           f32 ? 1e-4 : 3e-2, f32 ? 5e-5 : 3e-2))
          << "out of rank " << r;
      EXPECT_TRUE(AllClose(HostValues(lse), LocalRows(HostValues(full_lse), B * k.nh, S, 1, cp, r),
                           1e-5, f32 ? 1e-4 : 1e-3))
          << "lse of rank " << r;
      ASSERT_TRUE(ring.Backward(dout, qkv, out, lse, k.nh, k.nkv, dqkv, kv_buf, dkv_buf).ok());
      EXPECT_TRUE(AllClose(HostValues(dqkv), LocalRows(HostValues(full_dqkv), B, S, W, cp, r),
                           f32 ? 1e-4 : 3e-2, f32 ? 1e-4 : 3e-2))
          << "dqkv of rank " << r;
    }
  }
}

}  // namespace
}  // namespace loom

// Exits 77 (ctest: Skipped) on every rank when no device answers or every test skipped itself,
// agreed over the world, as communicator_gpu_test does.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = loom::World::Get();
  if (!world.ok()) return 1;
  constexpr int kSkipped = 77;
  int rc = 0;
  if (!GTEST_FLAG_GET(list_tests) && !loom::OnTestDevice() && loom::CudaDeviceCount() == 0) {
    std::printf("SKIPPED: %s; none of this binary's %d tests ran\n",
                loom::CudaUnavailableReason().c_str(),
                ::testing::UnitTest::GetInstance()->total_test_count());
    rc = kSkipped;
  } else {
    // A failed assertion on one rank leaves its peers waiting in the next transfer: a short
    // deadline turns that into an error instead of a hang.
    (*world)->state()->timeout = absl::Seconds(60);
    rc = RUN_ALL_TESTS();
    const ::testing::UnitTest& u = *::testing::UnitTest::GetInstance();
    if (rc == 0 && u.test_to_run_count() > 0 && u.skipped_test_count() == u.test_to_run_count()) {
      std::printf("SKIPPED: all %d tests skipped themselves\n", u.skipped_test_count());
      rc = kSkipped;
    }
  }
  int failed = rc != 0 && rc != kSkipped, skipped = rc == kSkipped;
  int any_failed = failed, all_skipped = skipped;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&skipped, &all_skipped, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (any_failed) return 1;
  return all_skipped ? kSkipped : 0;
}
