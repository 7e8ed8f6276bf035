// The machines `loom plan` knows by name (`--gpu h100-sxm`), and the calibration file that
// `loom bench step --calibration-out` writes on a real GPU and `loom plan --calibration` reads.
//
// A preset separates the two figures the planner needs about compute:
// - the peak: the part's datasheet dense bf16 tensor-core rate (the same figures as
//   ops/roofline.cc's GpuPartFor), which MFU is measured against;
// - the achievable efficiency: the fraction of that peak a training step's compute sustains when
//   nothing waits for communication or the pipeline. This is an assumption and is printed as
//   one. Each preset's default names its source (a published single-node measurement); a
//   calibration file replaces it with what loom itself measured on that GPU.
// Memory is what the driver leaves usable (nvidia-smi's total), links are per GPU and per
// direction. Every figure can be overridden by a flag.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loom {

struct GpuPreset {
  std::string name;        // the --gpu value: "h100-sxm"
  std::string part;        // "H100 SXM" (ops/roofline.cc GpuPartFor's name)
  double memory_gib = 0;   // usable memory per GPU
  double peak_tflops = 0;  // dense bf16 tensor-core TFLOP/s (datasheet)
  double efficiency = 0;   // default achievable fraction of the peak
  std::string efficiency_source;
  double intra_node_gbps = 0;  // Gbit/s per GPU per direction inside a node
  double inter_node_gbps = 0;  // Gbit/s per GPU per direction between nodes
  int gpus_per_node = 8;
  std::string links;  // what the two link figures are
};

// Every preset, in the order `--help` lists them.
const std::vector<GpuPreset>& GpuPresets();
// The preset named `name`; NotFound naming the known ones otherwise.
absl::StatusOr<GpuPreset> FindGpuPreset(const std::string& name);
// "h100-sxm|h100-pcie|..."
std::string GpuPresetNames();

// What one `loom bench step` measured: the model FLOP rate of a training step against the
// device's peak. Text, one "key value" line each (# comments): part, peak_tflops,
// achieved_tflops, efficiency, job.
struct Calibration {
  std::string part;  // "H100 SXM", or the CPU's description
  double peak_tflops = 0;
  double achieved_tflops = 0;
  double efficiency = 0;  // achieved / peak
  std::string job;        // what was measured (model shape, micro-batch, precision)
};
std::string FormatCalibration(const Calibration& c);
// `path` names the file in errors (a missing key, a number that is not one, an efficiency
// outside (0, 1]).
absl::StatusOr<Calibration> ParseCalibration(const std::string& text, const std::string& path);

}  // namespace loom
