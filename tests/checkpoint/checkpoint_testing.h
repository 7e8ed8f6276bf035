// Helpers for the checkpoint tests that save a small model state on one rank without a model:
// a two-tensor table, its weights and moments, and one CheckpointSaver::Save of it.
// Header-only: the test folders glob only *_test.cc files.
#pragma once

#include <optional>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "gtest/gtest.h"
#include "parallel/world.h"

namespace loom::testing {

inline Communicator& WorldComm() {
  auto w = World::Get();
  EXPECT_TRUE(w.ok()) << w.status();
  return (*w)->comm();
}

// A small model state: two tensors, weights and both moments (plain optimizer, one rank).
struct State {
  ParamTable table;
  std::vector<float> params, m, v;
};

inline State MakeState(float seed) {
  std::vector<ParamDesc> d(2);
  d[0] = {"w", Shape{6, 5}, TpSplit::kColumn};
  d[1] = {"b", Shape{7}, TpSplit::kReplicated};
  auto table = ParamTable::Create(d);
  EXPECT_TRUE(table.ok());
  State s{*table, {}, {}, {}};
  for (int64_t i = 0; i < s.table.total(); ++i) {
    s.params.push_back(seed + static_cast<float>(i));
    s.m.push_back(seed * 0.5f + static_cast<float>(i));
    s.v.push_back(seed * 0.25f + static_cast<float>(i));
  }
  return s;
}

inline absl::StatusOr<std::optional<SaveStats>> SaveStep(const std::string& dir, State& s,
                                                         int64_t step, int keep_last = 0) {
  CheckpointSaver saver(dir, keep_last, &WorldComm());
  CheckpointSources src;
  src.table = &s.table;
  src.optimizer.owned = {{0, s.table.total()}};
  src.params = Tensor::View(s.params.data(), Shape{s.table.total()}, DType::kF32, CpuDevice());
  src.m = Tensor::View(s.m.data(), Shape{s.table.total()}, DType::kF32, CpuDevice());
  src.v = Tensor::View(s.v.data(), Shape{s.table.total()}, DType::kF32, CpuDevice());
  CheckpointInfo info;
  info.step = step;
  info.layout.set_world_size(1);
  info.layout.set_dp(1);
  info.layout.set_tp(1);
  info.layout.set_pp(1);
  return saver.Save(src, info, /*async=*/false);
}

}  // namespace loom::testing
