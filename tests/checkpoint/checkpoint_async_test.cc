// checkpoint.async in one process: the background writer (CheckpointSaver's std::thread) runs
// while the caller goes on changing the state it saved, as training does. Each save must hold
// the state as it was when Save returned, and Poll / Finish commit it. The ThreadSanitizer stage
// (scripts/sanitize.sh tsan) runs this: a writer reading buffers the caller writes is a race.
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "gtest/gtest.h"
#include "tests/checkpoint/checkpoint_testing.h"
#include "tests/temp_dir.h"

namespace loom {
namespace {

std::vector<float> ReadWeights(const std::string& step_dir, const std::string& name, int64_t n) {
  auto r = CheckpointReader::Open(step_dir);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return {};
  const CheckpointTensor* t = nullptr;
  for (const auto& x : (*r)->manifest().tensors()) {
    if (x.name() == name) t = &x;
  }
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  TensorBox box;
  for (int64_t d : t->global_shape()) {
    box.offset.push_back(0);
    box.extent.push_back(d);
  }
  std::vector<float> out(box.numel());
  EXPECT_EQ(static_cast<int64_t>(out.size()), n);
  const CheckpointKind kind = (*r)->Has(name, MASTER) ? MASTER : WEIGHTS;
  absl::Status s = (*r)->ReadBox(name, kind, box, out.data());
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(CheckpointAsyncTest, EachSaveHoldsTheStateAsSavedWhileTrainingGoesOn) {
  testing::ScopedTempDir tmp;
  const std::string dir = tmp.path() + "/ckpt";
  testing::State s = testing::MakeState(1);
  CheckpointSaver saver(dir, /*keep_last=*/0, &testing::WorldComm());
  CheckpointSources src;
  src.table = &s.table;
  src.optimizer.owned = {{0, s.table.total()}};
  src.params = Tensor::View(s.params.data(), Shape{s.table.total()}, DType::kF32, CpuDevice());
  src.m = Tensor::View(s.m.data(), Shape{s.table.total()}, DType::kF32, CpuDevice());
  src.v = Tensor::View(s.v.data(), Shape{s.table.total()}, DType::kF32, CpuDevice());
  std::vector<std::vector<float>> saved;
  for (int64_t step = 1; step <= 3; ++step) {
    CheckpointInfo info;
    info.step = step;
    info.layout.set_world_size(1);
    info.layout.set_dp(1);
    info.layout.set_tp(1);
    info.layout.set_pp(1);
    auto r = saver.Save(src, info, /*async=*/true);  // finishes the pending one first
    ASSERT_TRUE(r.ok()) << r.status();
    saved.push_back(s.params);
    // "The next step": every buffer changes while the writer runs.
    for (int round = 0; round < 50; ++round) {
      for (size_t i = 0; i < s.params.size(); ++i) {
        s.params[i] += 1;
        s.m[i] += 1;
        s.v[i] += 1;
      }
      auto polled = saver.Poll();
      ASSERT_TRUE(polled.ok()) << polled.status();
    }
  }
  auto last = saver.Finish();
  ASSERT_TRUE(last.ok()) << last.status();
  for (int64_t step = 1; step <= 3; ++step) {
    const std::string step_dir = dir + "/step_0000000" + std::to_string(step);
    std::vector<float> w = ReadWeights(step_dir, "w", 30), b = ReadWeights(step_dir, "b", 7);
    w.insert(w.end(), b.begin(), b.end());
    EXPECT_EQ(w, saved[step - 1]) << "step " << step;
  }
}

}  // namespace
}  // namespace loom
