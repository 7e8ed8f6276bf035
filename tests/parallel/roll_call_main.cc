// The watchdog's roll call (World::TakeRollCall) under mpirun with 3 ranks, driven by
// roll_call_test.sh: rank 2 stalls outside MPI; rank 1 waits in an all-reduce with a long
// deadline (30 s), so it can only answer from inside its wait (CommState::on_long_wait); rank 0
// waits in the same all-reduce with a 2 s deadline, then takes the roll call. Rank 0 must hear
// rank 1 (naming the step and the operation) and name rank 2 as silent, print ROLLCALL_OK and
// end the job long before the stalled rank wakes.
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "parallel/world.h"

int main() {
  auto w = loom::World::Get();
  if (!w.ok()) return 1;
  loom::World& world = **w;
  if (world.size() != 3) {
    std::cerr << "run with 3 ranks" << std::endl;
    return 1;
  }
  world.state()->step = 17;
  if (world.rank() == 2) {
    std::this_thread::sleep_for(std::chrono::seconds(60));  // the stalled rank
    return 0;
  }
  world.state()->timeout = absl::Seconds(world.rank() == 0 ? 2 : 30);
  std::vector<float> data(1000, 1.0f);
  loom::Tensor t =
      loom::Tensor::View(data.data(), loom::Shape{1000}, loom::DType::kF32, loom::CpuDevice());
  absl::Status s = world.comm().AllReduce(t, loom::ReduceOp::kSum);
  if (world.rank() == 1) {
    std::cout << "rank 1 was not ended by rank 0's abort: " << s << std::endl;
    return 1;
  }
  const loom::World::RollCall call = world.TakeRollCall("the all-reduce", absl::Seconds(2));
  bool ok = s.code() == absl::StatusCode::kDeadlineExceeded && call.waiting.size() == 1 &&
            call.silent == std::vector<int>{2};
  for (const auto& [rank, where] : call.waiting) {
    std::cout << "rank " << rank << " answered: " << where << std::endl;
    ok = ok && rank == 1 && where.find("step 17: waiting in all_reduce(sum) of 4000 bytes") == 0;
  }
  for (int r : call.silent) std::cout << "rank " << r << " did not answer" << std::endl;
  if (ok) std::cout << "ROLLCALL_OK" << std::endl;
  world.Abort(ok ? 3 : 4);
}
