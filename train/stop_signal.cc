#include "train/stop_signal.h"

#include <csignal>
#include <cstring>
#include <mutex>

namespace loom {
namespace {

volatile std::sig_atomic_t g_signal = 0;

void OnStopSignal(int signal_number) {
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
