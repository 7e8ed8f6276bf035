// Fault injection for tests of the job's failure handling, from the environment:
//   LOOM_FAULT=stall|exit|nan|nan_grad   what goes wrong
//   LOOM_FAULT_RANK=r           on which world rank (default 0)
//   LOOM_FAULT_STEP=s           at which optimizer step, 1-based (default 1)
// stall: rank r sleeps forever inside step s, calling no MPI (as a rank stuck in compute would);
// exit: rank r ends at once with _exit(1), no MPI_Finalize, no destructors (as a crash would);
// nan: rank r's training loss of step s becomes NaN (the non-finite step policy then applies);
// nan_grad: one element of rank r's reduced gradient of step s becomes NaN (the first element
// the gradient norm counts on that rank) while the loss stays finite, as an overflow in one
// GEMM of one tensor or pipeline rank would leave it.
// Unset LOOM_FAULT means no fault and costs one branch per step. A malformed value is an error
// naming the variable, never a silent no-fault.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/adamw.h"
#include "runtime/tensor.h"

namespace loom {

class FaultInjector {
 public:
  enum class Kind { kNone, kStall, kExit, kNan, kNanGrad };

  // Reads the variables above for this world rank.
  static absl::StatusOr<FaultInjector> FromEnv(int world_rank);

  // Called once per step, after the step's loss is known and before the non-finite check and
  // the optimizer: stalls, exits or poisons *loss when the fault is due here. Returns OK.
  absl::Status AtStep(int64_t step, double* loss) const;
  // Called once per step after the gradient reduction, before the gradient norm: nan_grad
  // writes NaN into the first element of `grads` (the flat buffer) that lies both in one of
  // this rank's `owned` ranges and in one of the `counted` runs of the norm. Returns OK.
  absl::Status AtGradients(int64_t step, const Tensor& grads, const std::vector<FlatRange>& owned,
                           const std::vector<std::pair<int64_t, int64_t>>& counted) const;

  Kind kind() const { return kind_; }
  bool armed() const { return kind_ != Kind::kNone && mine_; }

 private:
  Kind kind_ = Kind::kNone;
  bool mine_ = false;  // this rank is LOOM_FAULT_RANK
  int rank_ = 0;
  int64_t step_ = 1;
};

}  // namespace loom
