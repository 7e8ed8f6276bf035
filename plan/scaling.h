// Scaling sweeps behind `loom bench scaling`: the job of each point (rank count) under weak or
// strong scaling, what one `loom train` run wrote (metrics.jsonl) reduced to one row, and the
// table, CSV, JSON and SVG plot of the sweep. Pure functions over files and strings; the command
// (launcher/cmd_bench_scaling.cc) launches the runs.
//
// Weak scaling keeps the sequences per rank: the global batch of point n is n / ranks[0] times
// the config's. Strong scaling keeps the config's global batch. The layout of a point is tp =
// min(--tp, n) tensor ranks (which must divide n), data parallel over the rest.
// Efficiency is tokens/s per rank against the first point's tokens/s per rank (1.0 = ideal).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/job.pb.h"

namespace loom {

enum class ScalingMode { kWeak, kStrong };

struct ScalingPoint {
  int ranks = 1;
  int tp = 1, dp = 1, pp = 1;
  int64_t global_batch = 0;
  // Measured, from metrics.jsonl (the steps after the warm-up ones).
  double tokens_per_s = 0;
  std::optional<double> mfu;
  double comm_share = 0;    // exposed communication / step time
  double bubble_share = 0;  // (pp-1)/(v*m+pp-1) of the schedule (0 without pipeline stages)
  int64_t peak_bytes = 0;   // rank 0's allocator peak
  double flops_per_rank = 0;
  double efficiency = 0;
  std::string Layout() const;  // "dp2 tp2 pp1"
};

// The --set overrides that make point `ranks` of the sweep from the config, or an error naming
// a tp that does not divide the rank count.
absl::StatusOr<std::vector<std::string>> ScalingOverrides(const JobConfig& config, ScalingMode mode,
                                                          int first_ranks, int ranks, int tp);

// Reads <run_dir>/metrics.jsonl into `point` (skipping the first `warmup` logged steps, or
// using the last line when no more are left). An error names the file and what is missing.
absl::Status ReadRunMetrics(const std::string& run_dir, int warmup, ScalingPoint* point);

// Fills flops_per_rank and efficiency from the measured figures (points in sweep order).
void FinishScaling(double flops_per_token, std::vector<ScalingPoint>* points);

std::string FormatScalingTable(const std::vector<ScalingPoint>& points);
std::string ScalingCsv(const std::vector<ScalingPoint>& points);
std::string ScalingJson(const std::vector<ScalingPoint>& points, ScalingMode mode);
// Tokens/s against ranks (measured, and the ideal line from the first point) and efficiency,
// two panels, each with its title, a legend, round y ticks and a marker on each measured point.
std::string ScalingSvg(const std::vector<ScalingPoint>& points, ScalingMode mode);

// Round ticks for an axis from 0 to max: 0, s, 2s, ... up to the first multiple of s >= max,
// where the step s is 1, 2 or 5 times a power of ten, the smallest giving at most max_intervals
// intervals. {0, 1} for a max that is not positive.
std::vector<double> NiceTicks(double max, int max_intervals = 6);

// The SVG's text: font size, and the width a string takes at a size (an estimate for
// sans-serif, erring wide), which the layout and its test use to keep text inside the picture.
inline constexpr double kSvgFontSize = 11;
double SvgTextWidth(absl::string_view text, double font_size);

}  // namespace loom
