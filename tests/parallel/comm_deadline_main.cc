// The deadline of a collective, end to end under mpirun (driven by comm_deadline_test.sh): the
// last rank stalls instead of joining an all-reduce; every other rank must get
// DeadlineExceeded naming the operation, the group, the byte count and the step within the
// timeout + 5 s, print DEADLINE_OK, and end the job (World::Abort), so mpirun returns long
// before the stalled rank would wake up.
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
  world.state()->timeout = absl::Seconds(2);
  world.state()->step = 17;
  if (world.rank() == world.size() - 1) {
    std::this_thread::sleep_for(std::chrono::seconds(120));  // the stalled rank
    return 0;
  }
  std::vector<float> data(1000, 1.0f);
  loom::Tensor t = loom::Tensor::View(data.data(), loom::Shape{1000}, loom::DType::kF32,
                                      loom::CpuDevice());
  const absl::Time start = absl::Now();
  absl::Status s = world.comm().AllReduce(t, loom::ReduceOp::kSum);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::cout << "rank " << world.rank() << " after " << seconds << " s: " << s << std::endl;
  const std::string msg(s.message());
  const bool ok = s.code() == absl::StatusCode::kDeadlineExceeded &&
                  msg.find("all_reduce(sum)") != std::string::npos &&
                  msg.find("4000 bytes") != std::string::npos &&
                  msg.find("world [") != std::string::npos &&
                  msg.find("step 17") != std::string::npos && seconds >= 2.0 && seconds < 20.0;
  if (ok) std::cout << "DEADLINE_OK rank " << world.rank() << std::endl;
  // The first rank to abort takes the job down; under load another waiting rank's deadline can
  // fire a moment later, so give it time to report before the abort (the stalled rank sleeps
  // 120 s, so this still proves the job ends long before it would).
  std::this_thread::sleep_for(std::chrono::seconds(3));
  world.Abort(ok ? 3 : 4);
}
