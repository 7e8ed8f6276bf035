#include "runtime/profiler.h"

#include <atomic>
#include <mutex>

namespace loom {
namespace {
std::atomic<bool> g_enabled{false};
std::mutex g_mu;
std::map<std::string, OpTime>& Times() {
  static auto* times = new std::map<std::string, OpTime>();
  return *times;
}
}  // namespace

void OpProfiler::Enable(bool on) { g_enabled = on; }
bool OpProfiler::enabled() { return g_enabled; }
void OpProfiler::Reset() {
  std::lock_guard<std::mutex> lock(g_mu);
  Times().clear();
}
std::map<std::string, OpTime> OpProfiler::Report() {
  std::lock_guard<std::mutex> lock(g_mu);
  return Times();
}

OpProfiler::Scope::Scope(const char* family, Device* device)
    : family_(g_enabled ? family : nullptr), device_(device) {
  if (family_ != nullptr) {
    (void)device_->Synchronize();
    timer_.Reset();
  }
}

OpProfiler::Scope::~Scope() {
  if (family_ == nullptr) return;
  (void)device_->Synchronize();
  double s = timer_.Seconds();
  std::lock_guard<std::mutex> lock(g_mu);
  OpTime& t = Times()[family_];
  t.seconds += s;
  t.calls++;
}

}  // namespace loom
