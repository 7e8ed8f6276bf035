// Fuzz target: job configs (job/config_text.h) and `--set` values, as `loom train` and `loom
// config check` read them. An input is a text-format JobConfig; each line that starts with
// "--set " is taken out of the text and applied as an override instead. Any input either loads
// or is refused with a Status; a loaded config prints as text that parses back to the same
// config; and the checks that follow (problems, layout, memory estimate) refuse or answer,
// never crash, for the world size the config asks for.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "job/config_problems.h"
#include "job/config_text.h"
#include "job/job_layout.h"
#include "job/memory_estimate.h"
#include "runtime/files.h"
#include "tests/fuzz/fuzz_target.h"

namespace loom::fuzz {

// The shipped configs, and one of them with overrides of every kind.
absl::Status WriteSeeds(const std::string& dir) {
  const char* src = std::getenv("LOOM_SOURCE_DIR");
  const std::filesystem::path configs = std::filesystem::path(src ? src : ".") / "configs";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(configs, ec)) {
    if (e.path().extension() != ".textproto") continue;
    auto text = ReadFile(e.path().string());
    if (!text.ok()) return text.status();
    auto stem = e.path().stem().string();
    if (absl::Status s = AtomicWriteFile(dir + "/" + stem + ".txt", *text); !s.ok()) return s;
    if (stem == "tiny") {
      const std::string sets =
          "--set parallel.tp=2\n--set parallel.stage_layers=[1,3]\n--set "
          "data.train=\"a,b\"\n--set lr_schedule.decay_style=LINEAR\n--set "
          "optimizer.lr=3e-4\n--set runtime.stop_at_step=\n";
      if (absl::Status s = AtomicWriteFile(dir + "/tiny_sets.txt", sets + *text); !s.ok()) {
        return s;
      }
    }
  }
  if (ec) return absl::NotFoundError(configs.string() + ": " + ec.message());
  return absl::OkStatus();
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loom::fuzz::QuietProtobuf();
  std::string text;
  std::vector<std::string> overrides;
  const std::string input(reinterpret_cast<const char*>(data), size);
  for (size_t at = 0; at < input.size();) {
    size_t end = input.find('\n', at);
    if (end == std::string::npos) end = input.size();
    const std::string line = input.substr(at, end - at);
    if (line.rfind("--set ", 0) == 0) {
      overrides.push_back(line.substr(6));
    } else {
      text.append(line).append("\n");
    }
    at = end + 1;
  }
  const std::string path = loom::fuzz::WriteScratch(
      "job.textproto", reinterpret_cast<const uint8_t*>(text.data()), text.size());
  auto config = loom::LoadJobConfig(path, overrides);
  if (!config.ok()) return 0;

  // Printed and parsed back, a config is the same config.
  auto again = loom::ParseJobConfigText(loom::JobConfigToText(*config), "printed");
  if (!again.ok()) {
    std::fprintf(stderr, "a loaded config does not parse back: %s\n",
                 again.status().ToString().c_str());
    std::abort();
  }
  google::protobuf::util::DefaultFieldComparator nan_equal;
  nan_equal.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer diff;
  diff.set_field_comparator(&nan_equal);
  if (!diff.Compare(*config, *again)) {
    std::fprintf(stderr, "a loaded config prints as another config\n");
    std::abort();
  }

  // The world the config asks for (bounded, as `config check --world-size` would be).
  const auto& p = config->parallel();
  int64_t world = 1;
  for (int64_t d : {int64_t{p.dp()}, int64_t{p.tp()}, int64_t{p.pp()}}) {
    if (d > 0 && d <= 1024) world *= d;
  }
  if (world > 65536) world = 1;
  (void)loom::NotYetSupported(*config);
  auto layout = loom::JobLayout::Create(*config, static_cast<int>(world));
  if (!layout.ok()) return 0;
  (void)loom::FormatJobLayout(*layout, "  ");
  auto memory = loom::EstimateMemoryPerRank(*layout);
  if (memory.ok()) (void)loom::FormatMemoryEstimate(*memory, "  ");
  return 0;
}
