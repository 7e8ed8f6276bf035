#include "train/stop_signal.h"

#include <unistd.h>

#include <csignal>
#include <cstring>
#include <mutex>

namespace loom {
namespace {

volatile std::sig_atomic_t g_signal = 0;

// Printed (write(2) is async-signal-safe) the moment the signal arrives: a process that is
// about to be killed (mpirun SIGKILLs its ranks 1 s after forwarding a SIGTERM) still tells
// the user how to stop it cleanly next time.
constexpr char kTermHint[] =
    "loom: stop signal received: finishing this step, then saving (with a checkpoint.dir) and "
    "exiting 0. Under mpirun send SIGUSR1 to mpirun instead of SIGTERM (Open MPI forwards "
    "SIGUSR1, but SIGKILLs the ranks 1 s after a SIGTERM); under Slurm use "
    "#SBATCH --signal=B:USR1@300 with the trap of scripts/train.sbatch. A second SIGTERM or "
    "SIGINT ends the process at once.\n";
constexpr char kUsr1Hint[] =
    "loom: SIGUSR1 received: finishing this step, then saving (with a checkpoint.dir) and "
    "exiting 0.\n";

void OnStopSignal(int signal_number) {
  if (g_signal == 0) {
    const char* hint = signal_number == SIGUSR1 ? kUsr1Hint : kTermHint;
    const size_t n = signal_number == SIGUSR1 ? sizeof(kUsr1Hint) - 1 : sizeof(kTermHint) - 1;
    [[maybe_unused]] const ssize_t w = ::write(STDERR_FILENO, hint, n);
  }
  if (g_signal != 0) {
    // Second request: give the signal its default meaning.
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
    return;
  }
  g_signal = signal_number;
}

}  // namespace

void InstallStopSignalHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_handler = OnStopSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // a read or write in progress carries on
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGUSR1, &action, nullptr);  // a scheduler's "save and stop" warning
  });
}

int StopSignalReceived() { return g_signal; }

const char* StopSignalName() {
  switch (g_signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGUSR1:
      return "SIGUSR1";
    case 0:
      return "";
    default:
      return "a signal";
  }
}

void ResetStopSignalForTesting() { g_signal = 0; }
void RaiseStopForTesting(int signal_number) { g_signal = signal_number; }

}  // namespace loom
