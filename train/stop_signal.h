// A clean stop on SIGTERM, SIGINT or SIGUSR1: the handlers only record the signal; the training
// loop looks at step boundaries (Trainer::Run), finishes the step it is in, agrees with every other
// rank to stop at the same step, logs "stopped at step N" and returns normally (exit code 0).
// With a checkpoint.dir the trainer saves there before it returns.
//
// A second SIGTERM or SIGINT while the first is pending restores the default action and
// re-raises it, so a run stuck inside a step can still be ended at once (Ctrl-C twice).
//
// Under mpirun, send SIGUSR1 to mpirun (Open MPI forwards SIGUSR1 and SIGUSR2 to every rank),
// or signal the loom processes themselves (`kill -TERM <pid>` of one rank is enough): every
// rank stops at the same step and mpirun exits 0. A SIGTERM sent to mpirun is forwarded too,
// but mpirun SIGKILLs the ranks 1 s later (odls_base_sigkill_timeout), mid-save if a save takes
// longer, and exits 1; raising that MCA setting did not help with Open MPI 4.1.4 (tested by
// hand). Under Slurm: `#SBATCH --signal=B:USR1@N` and the trap of scripts/train.sbatch
// (tests/checkpoint/stop_mpirun_test.sh). The handler prints this advice when a signal arrives.
#pragma once

namespace loom {

// Installs the handlers (idempotent).
void InstallStopSignalHandlers();
// The signal that asked this process to stop (SIGTERM, SIGINT, SIGUSR1), or 0.
int StopSignalReceived();
// "SIGTERM", "SIGINT", "SIGUSR1", or "" when none arrived.
const char* StopSignalName();
// For tests: forget a received signal, or pretend one arrived.
void ResetStopSignalForTesting();
void RaiseStopForTesting(int signal_number);

}  // namespace loom
