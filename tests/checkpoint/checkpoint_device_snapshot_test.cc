// The checkpoint snapshot from a device (issue 18), on the test device (runtime/test_device.h)
// under mpirun at 2 ranks (dp 2): only the regions a rank writes leave the device, into the
// device's host staging memory, with the copies queued on its stream and one host wait; a
// replica that saves nothing copies nothing and waits for nothing. Counted by the device's own
// counters (Device::bytes_to_host, host_syncs). The saved values are read back through the
// reader, also from an async save whose device buffers change right after the snapshot.
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "gtest/gtest.h"
#include "parallel/world.h"
#include "runtime/test_device.h"
#include "tests/temp_dir.h"

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

// A model state of `descs` with the weights, m and v on this rank's test device (plain
// optimizer, replicated over dp 2).
struct DeviceState {
  ParamTable table;
  std::vector<float> params, m, v;
  Tensor dparams, dm, dv;
};

DeviceState MakeState(const std::vector<ParamDesc>& descs) {
  auto table = ParamTable::Create(descs);
  EXPECT_TRUE(table.ok()) << table.status();
  DeviceState s{*table, {}, {}, {}, {}, {}, {}};
  for (int64_t i = 0; i < s.table.total(); ++i) {
    s.params.push_back(1.0f + static_cast<float>(i));
    s.m.push_back(0.5f + static_cast<float>(i));
    s.v.push_back(0.25f + static_cast<float>(i));
  }
  for (auto [dst, src] : {std::pair{&s.dparams, &s.params}, {&s.dm, &s.m}, {&s.dv, &s.v}}) {
    *dst = *Tensor::Empty(Shape{s.table.total()}, DType::kF32, MyDevice());
    EXPECT_TRUE(dst->CopyFromFloats(*src).ok());
  }
  return s;
}

CheckpointSources SourcesOf(const DeviceState& s) {
  CheckpointSources src;
  src.table = &s.table;
  src.coord = GridCoord{0, TheWorld().rank(), 0};
  src.dp_size = TheWorld().size();
  src.optimizer.owned = {{0, s.table.total()}};
  src.params = s.dparams;
  src.m = s.dm;
  src.v = s.dv;
  return src;
}

CheckpointInfo InfoAt(int64_t step) {
  CheckpointInfo info;
  info.step = step;
  info.layout.set_world_size(TheWorld().size());
  info.layout.set_dp(TheWorld().size());
  info.layout.set_tp(1);
  info.layout.set_pp(1);
  return info;
}

// The bytes this rank's regions hold (all f32 here), from the slice plan itself.
int64_t PlannedBytes(const CheckpointSources& src) {
  auto regions = SavedRegions(*src.table, src.coord, src.optimizer, src.dp_size);
  EXPECT_TRUE(regions.ok()) << regions.status();
  int64_t bytes = 0;
  for (const Region& r : *regions) bytes += r.box.numel() * 4;
  return bytes;
}

struct Moved {
  int64_t bytes_to_host = 0, host_syncs = 0;
};

// Saves step `step` and returns what this rank's device moved to the host and how often the
// host waited for it during the save.
Moved Save(const std::string& dir, const DeviceState& s, int64_t step, bool async,
           const std::function<void()>& after_snapshot = nullptr) {
  CheckpointSaver saver(dir, 0, &TheWorld().comm());
  Device* d = MyDevice();
  const int64_t bytes = d->bytes_to_host(), syncs = d->host_syncs();
  auto saved = saver.Save(SourcesOf(s), InfoAt(step), async);
  EXPECT_TRUE(saved.ok()) << saved.status();
  Moved moved{d->bytes_to_host() - bytes, d->host_syncs() - syncs};
  if (after_snapshot) after_snapshot();
  if (async) {
    auto finished = saver.Finish();
    EXPECT_TRUE(finished.ok()) << finished.status();
  }
  return moved;
}

// The saved state, read back whole (every rank reads every slice).
void ExpectSaved(const std::string& dir, int64_t step, const DeviceState& s) {
  auto reader = CheckpointReader::Open(absl::StrCat(dir, "/", StepDirName(step)));
  ASSERT_TRUE(reader.ok()) << reader.status();
  OptimizerView plan;
  plan.owned = {{0, s.table.total()}};
  std::vector<float> w(s.table.total()), m(s.table.total()), v(s.table.total());
  ASSERT_TRUE((*reader)->Load(s.table, plan, true, w.data(), nullptr, m.data(), v.data()).ok());
  EXPECT_EQ(w, s.params);
  EXPECT_EQ(m, s.m);
  EXPECT_EQ(v, s.v);
}

std::string SharedDir(const testing::ScopedTempDir& mine) {
  // Rank 0's directory for every rank (one host).
  std::vector<char> path(mine.path().begin(), mine.path().end());
  path.resize(4096, '\0');
  EXPECT_EQ(MPI_Bcast(path.data(), 4096, MPI_CHAR, 0, MPI_COMM_WORLD), MPI_SUCCESS);
  return std::string(path.data());
}

TEST(CheckpointDeviceSnapshot, ASavingRankCopiesExactlyItsRegionsWithOneWait) {
  ASSERT_EQ(TheWorld().size(), 2) << "run at 2 ranks";
  testing::ScopedTempDir tmp("ckpt_device_snapshot");
  const std::string dir = SharedDir(tmp);
  DeviceState s = MakeState({{"w", Shape{6, 5}, TpSplit::kColumn}, {"b", Shape{7}}});
  const int64_t planned = PlannedBytes(SourcesOf(s));
  // Half of the weights and half of each moment: far less than the whole state.
  ASSERT_GT(planned, 0);
  ASSERT_LT(planned, 3 * 4 * s.table.total());
  const Moved sync = Save(dir, s, 1, /*async=*/false);
  EXPECT_EQ(sync.bytes_to_host, planned) << "rank " << TheWorld().rank();
  EXPECT_EQ(sync.host_syncs, 1) << "one wait for all the snapshot's copies";
  ExpectSaved(dir, 1, s);

  // Async: the device buffers change right after Save returns; the checkpoint holds the
  // snapshot's values.
  const DeviceState before = MakeState({{"w", Shape{6, 5}, TpSplit::kColumn}, {"b", Shape{7}}});
  const Moved async = Save(dir, s, 2, /*async=*/true, [&] {
    std::vector<float> other(s.table.total(), -3.0f);
    EXPECT_TRUE(s.dparams.CopyFromFloats(other).ok());
    EXPECT_TRUE(s.dm.CopyFromFloats(other).ok());
    EXPECT_TRUE(s.dv.CopyFromFloats(other).ok());
  });
  EXPECT_EQ(async.bytes_to_host, planned);
  EXPECT_EQ(async.host_syncs, 1);
  ExpectSaved(dir, 2, before);
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0's directory stays until every rank has read it
}

TEST(CheckpointDeviceSnapshot, AReplicaThatSavesNothingCopiesNothing) {
  ASSERT_EQ(TheWorld().size(), 2) << "run at 2 ranks";
  testing::ScopedTempDir tmp("ckpt_device_snapshot");
  const std::string dir = SharedDir(tmp);
  // One element replicated over dp 2: dp rank 1's share is all of it, dp rank 0's nothing.
  DeviceState s = MakeState({{"b", Shape{1}}});
  const int64_t planned = PlannedBytes(SourcesOf(s));
  EXPECT_EQ(planned, TheWorld().rank() == 0 ? 0 : 12);
  const Moved moved = Save(dir, s, 1, /*async=*/false);
  EXPECT_EQ(moved.bytes_to_host, planned) << "rank " << TheWorld().rank();
  EXPECT_EQ(moved.host_syncs, planned > 0 ? 1 : 0) << "rank " << TheWorld().rank();
  ExpectSaved(dir, 1, s);
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace loom
