#include "plan/gpu_presets.h"

#include <cmath>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace loom {
namespace {

// The default efficiencies come from MosaicML's published llm-foundry throughput tables
// (scripts/train/benchmarking/README.md in mosaicml/llm-foundry): single-node runs (8 GPUs,
// FSDP, bf16, sequence 2048, no activation checkpointing, so MFU = HFU), where communication
// is small and mostly overlapped, i.e. close to what the compute alone sustains. The best such
// row per part is taken. docs/planner.md lists them.
constexpr char kH100Source[] =
    "llm-foundry benchmarks: MPT-7B, seq 2048, 8x H100 80GB bf16, no checkpointing: 46.4% MFU";
constexpr char kA100Source[] =
    "llm-foundry benchmarks: MPT-13B, seq 2048, 8x A100 80GB bf16, no checkpointing: 59.6% MFU";
constexpr char kA100_40Source[] =
    "llm-foundry benchmarks: MPT-3B, seq 2048, 8x A100 40GB bf16, no checkpointing: 57.8% MFU";

}  // namespace

const std::vector<GpuPreset>& GpuPresets() {
  static const std::vector<GpuPreset> presets = {
      {"h100-sxm", "H100 SXM", 79.6, 989.4, 0.46, kH100Source, 3600, 400, 8,
       "NVLink 4 (450 GB/s per direction), one 400 Gb/s NIC per GPU"},
      {"h100-pcie", "H100 PCIe", 79.6, 756.5, 0.46,
       absl::StrCat(kH100Source, " (the SXM part's figure; none published for PCIe)"), 512, 400, 8,
       "PCIe 5 x16 (64 GB/s per direction), one 400 Gb/s NIC per GPU"},
      {"h200", "H200 SXM", 140.4, 989.4, 0.46,
       absl::StrCat(kH100Source, " (the H100's figure: the same compute, more memory)"), 3600, 400,
       8, "NVLink 4 (450 GB/s per direction), one 400 Gb/s NIC per GPU"},
      {"a100-80gb", "A100 SXM 80GB", 80, 312, 0.60, kA100Source, 2400, 200, 8,
       "NVLink 3 (300 GB/s per direction), one 200 Gb/s HDR NIC per GPU (DGX A100)"},
      {"a100-40gb", "A100 SXM 40GB", 40, 312, 0.58, kA100_40Source, 2400, 200, 8,
       "NVLink 3 (300 GB/s per direction), one 200 Gb/s HDR NIC per GPU (DGX A100)"},
  };
  return presets;
}

std::string GpuPresetNames() {
  std::vector<std::string> names;
  for (const GpuPreset& p : GpuPresets()) names.push_back(p.name);
  return absl::StrJoin(names, "|");
}

absl::StatusOr<GpuPreset> FindGpuPreset(const std::string& name) {
  for (const GpuPreset& p : GpuPresets()) {
    if (p.name == name) return p;
  }
  return absl::NotFoundError(
      absl::StrCat("--gpu: unknown GPU '", name, "'; loom plan knows ", GpuPresetNames(),
                   " (or give --gpu-memory-gib, --peak-tflops, --efficiency and the link flags)"));
}

std::string FormatCalibration(const Calibration& c) {
  return absl::StrFormat(
      "# loom calibration: written by `loom bench step --calibration-out`, read by `loom plan "
      "--calibration`\n"
      "part %s\npeak_tflops %.6g\nachieved_tflops %.6g\nefficiency %.6g\njob %s\n",
      c.part, c.peak_tflops, c.achieved_tflops, c.efficiency, c.job);
}

absl::StatusOr<Calibration> ParseCalibration(const std::string& text, const std::string& path) {
  std::map<std::string, std::string> kv;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::pair<std::string, std::string> p = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    kv[p.first] = std::string(absl::StripAsciiWhitespace(p.second));
  }
  Calibration c;
  for (const char* key : {"part", "peak_tflops", "achieved_tflops", "efficiency", "job"}) {
    if (!kv.count(key)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a loom calibration file: no '",
                                                     key,
                                                     "' line (write one with loom bench "
                                                     "step --calibration-out)"));
    }
  }
  c.part = kv["part"];
  c.job = kv["job"];
  for (auto [key, out] : {std::pair<const char*, double*>{"peak_tflops", &c.peak_tflops},
                          {"achieved_tflops", &c.achieved_tflops},
                          {"efficiency", &c.efficiency}}) {
    if (!absl::SimpleAtod(kv[key], out) || !std::isfinite(*out) || *out <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", key, " must be a positive number, got '", kv[key], "'"));
    }
  }
  if (c.efficiency > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": efficiency ", c.efficiency, " exceeds 1 (achieved above the peak)"));
  }
  return c;
}

}  // namespace loom
