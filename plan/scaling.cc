#include "plan/scaling.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "metrics/metrics.h"
#include "runtime/files.h"

namespace loom {
namespace {

// The number after "key": in a metrics line, if present and not null.
std::optional<double> JsonField(absl::string_view line, absl::string_view key) {
  const std::string pattern = absl::StrCat("\"", key, "\":");
  const size_t at = line.find(pattern);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest = line.substr(at + pattern.size());
  rest = rest.substr(0, rest.find_first_of(",}"));
  double v = 0;
  if (!absl::SimpleAtod(rest, &v)) return std::nullopt;
  return v;
}

}  // namespace

std::string ScalingPoint::Layout() const { return absl::StrCat("dp", dp, " tp", tp, " pp", pp); }

absl::StatusOr<std::vector<std::string>> ScalingOverrides(const JobConfig& config, ScalingMode mode,
                                                          int first_ranks, int ranks, int tp) {
  const int t = std::min(tp, ranks);
  const int pp = std::max(1, config.parallel().pp());
  if (ranks % (t * pp) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tp ", tp, " (x parallel.pp ", pp, ") does not divide ", ranks, " ranks"));
  }
  int64_t global = config.parallel().global_batch_size();
  if (mode == ScalingMode::kWeak) {
    if ((global * ranks) % first_ranks != 0) {
      return absl::InvalidArgumentError(absl::StrCat("weak scaling: parallel.global_batch_size ",
                                                     global, " x ", ranks,
                                                     " ranks is not a "
                                                     "multiple of the first point's ",
                                                     first_ranks, " ranks"));
    }
    global = global * ranks / first_ranks;
  }
  return std::vector<std::string>{
      absl::StrCat("parallel.tp=", t), absl::StrCat("parallel.dp=", ranks / (t * pp)),
      absl::StrCat("parallel.global_batch_size=", global),
      absl::StrCat("parallel.sequence_parallel=", t > 1 ? "true" : "false")};
}

absl::Status ReadRunMetrics(const std::string& run_dir, int warmup, ScalingPoint* p) {
  const std::string path = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  auto text = ReadFile(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat(path, ": ", text.status().message()));
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  if (lines.empty()) return absl::DataLossError(absl::StrCat(path, ": no step was logged"));
  const size_t first = std::min(lines.size() - 1, static_cast<size_t>(std::max(0, warmup)));
  double tps = 0, mfu = 0, comm = 0;
  int n = 0, n_mfu = 0, n_comm = 0;
  for (size_t i = first; i < lines.size(); ++i) {
    const auto t = JsonField(lines[i], "tokens_per_s");
    if (!t) return absl::DataLossError(absl::StrCat(path, " line ", i + 1, ": no tokens_per_s"));
    tps += *t;
    ++n;
    if (auto m = JsonField(lines[i], "mfu")) mfu += *m, ++n_mfu;
    if (auto c = JsonField(lines[i], "comm_share")) comm += *c, ++n_comm;
    if (auto b = JsonField(lines[i], "peak_bytes")) {
      p->peak_bytes = std::max(p->peak_bytes, static_cast<int64_t>(*b));
    }
  }
  p->tokens_per_s = tps / n;
  if (n_mfu > 0) p->mfu = mfu / n_mfu;
  p->comm_share = n_comm > 0 ? comm / n_comm : 0;
  return absl::OkStatus();
}

void FinishScaling(double flops_per_token, std::vector<ScalingPoint>* points) {
  if (points->empty()) return;
  const double base = points->front().tokens_per_s / points->front().ranks;
  for (ScalingPoint& p : *points) {
    const double per_rank = p.tokens_per_s / p.ranks;
    p.flops_per_rank = per_rank * flops_per_token;
    p.efficiency = base > 0 ? per_rank / base : 0;
  }
}

std::string FormatScalingTable(const std::vector<ScalingPoint>& points) {
  std::string out = absl::StrFormat("%5s  %-14s %12s %12s %10s %12s %7s %7s %8s %10s\n", "ranks",
                                    "layout", "tokens/s", "per rank", "efficiency", "flop/s/rank",
                                    "MFU", "comm", "bubble", "peak mem");
  for (const ScalingPoint& p : points) {
    absl::StrAppendFormat(&out, "%5d  %-14s %12s %12s %9.1f%% %12s %7s %6.1f%% %7.1f%% %10s\n",
                          p.ranks, p.Layout(), FormatCount(p.tokens_per_s),
                          FormatCount(p.tokens_per_s / p.ranks), 100 * p.efficiency,
                          FormatCount(p.flops_per_rank),
                          p.mfu ? absl::StrFormat("%.1f%%", 100 * *p.mfu) : std::string("-"),
                          100 * p.comm_share, 100 * p.bubble_share, FormatBytes(p.peak_bytes));
  }
  return out;
}

std::string ScalingCsv(const std::vector<ScalingPoint>& points) {
  std::string out =
      "ranks,dp,tp,pp,global_batch,tokens_per_s,tokens_per_s_per_rank,efficiency,"
      "flops_per_rank,mfu,comm_share,bubble_share,peak_bytes\n";
  for (const ScalingPoint& p : points) {
    absl::StrAppend(&out, p.ranks, ",", p.dp, ",", p.tp, ",", p.pp, ",", p.global_batch, ",",
                    JsonNumber(p.tokens_per_s), ",", JsonNumber(p.tokens_per_s / p.ranks), ",",
                    JsonNumber(p.efficiency), ",", JsonNumber(p.flops_per_rank), ",",
                    p.mfu ? JsonNumber(*p.mfu) : "", ",", JsonNumber(p.comm_share), ",",
                    JsonNumber(p.bubble_share), ",", p.peak_bytes, "\n");
  }
  return out;
}

std::string ScalingJson(const std::vector<ScalingPoint>& points, ScalingMode mode) {
  std::string out = absl::StrCat("{\"mode\":\"", mode == ScalingMode::kWeak ? "weak" : "strong",
                                 "\",\"points\":[");
  for (size_t i = 0; i < points.size(); ++i) {
    const ScalingPoint& p = points[i];
    absl::StrAppend(&out, i ? "," : "", "{\"ranks\":", p.ranks, ",\"dp\":", p.dp, ",\"tp\":", p.tp,
                    ",\"pp\":", p.pp, ",\"global_batch\":", p.global_batch,
                    ",\"tokens_per_s\":", JsonNumber(p.tokens_per_s),
                    ",\"tokens_per_s_per_rank\":", JsonNumber(p.tokens_per_s / p.ranks),
                    ",\"efficiency\":", JsonNumber(p.efficiency),
                    ",\"flops_per_rank\":", JsonNumber(p.flops_per_rank),
                    ",\"mfu\":", p.mfu ? JsonNumber(*p.mfu) : "null",
                    ",\"comm_share\":", JsonNumber(p.comm_share),
                    ",\"bubble_share\":", JsonNumber(p.bubble_share),
                    ",\"peak_bytes\":", p.peak_bytes, "}");
  }
  absl::StrAppend(&out, "]}\n");
  return out;
}

std::string ScalingSvg(const std::vector<ScalingPoint>& points, ScalingMode mode) {
  // Two panels side by side: tokens/s (measured and ideal) and efficiency, ranks on a log2 axis.
  constexpr double kW = 360, kH = 260, kLeft = 60, kTop = 30, kPlotW = 270, kPlotH = 180;
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      2 * kW, kH);
  if (points.empty()) return out + "</svg>\n";
  const double r0 = points.front().ranks, r1 = std::max<double>(points.back().ranks, r0 * 2);
  auto x = [&](double panel, double ranks) {
    return panel * kW + kLeft + kPlotW * std::log2(ranks / r0) / std::log2(r1 / r0);
  };
  const double base = points.front().tokens_per_s / points.front().ranks;
  double ymax = 0;
  for (const ScalingPoint& p : points) ymax = std::max({ymax, p.tokens_per_s, base * p.ranks});
  ymax *= 1.1;
  auto axes = [&](double panel, const std::string& title, double top_value, bool percent) {
    const double x0 = panel * kW + kLeft;
    absl::StrAppendFormat(
        &out,
        "<text x=\"%.0f\" y=\"18\" font-size=\"13\">%s</text>\n"
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n",
        x0, title, x0, kTop, x0, kTop + kPlotH, x0, kTop + kPlotH, x0 + kPlotW, kTop + kPlotH);
    for (int k = 0; k <= 4; ++k) {
      const double v = top_value * k / 4, y = kTop + kPlotH - kPlotH * k / 4;
      absl::StrAppendFormat(&out, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%s</text>\n",
                            x0 - 4, y + 4,
                            percent ? absl::StrFormat("%.0f%%", 100 * v) : FormatCount(v));
    }
    for (const ScalingPoint& p : points) {
      absl::StrAppendFormat(&out, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n",
                            x(panel, p.ranks), kTop + kPlotH + 14, p.ranks);
    }
    absl::StrAppendFormat(&out, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">ranks</text>\n",
                          x0 + kPlotW / 2, kTop + kPlotH + 30);
  };
  auto line = [&](double panel, double top_value, const std::string& color, bool dashed,
                  auto value_of) {
    std::string pts;
    for (const ScalingPoint& p : points) {
      absl::StrAppendFormat(&pts, "%.1f,%.1f ", x(panel, p.ranks),
                            kTop + kPlotH - kPlotH * value_of(p) / top_value);
    }
    absl::StrAppendFormat(
        &out, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", pts,
        color, dashed ? " stroke-dasharray=\"5,4\"" : "");
  };
  axes(0,
       absl::StrCat("tokens/s (", mode == ScalingMode::kWeak ? "weak" : "strong",
                    " scaling): measured, ideal dashed"),
       ymax, false);
  line(0, ymax, "gray", true, [&](const ScalingPoint& p) { return base * p.ranks; });
  line(0, ymax, "steelblue", false, [](const ScalingPoint& p) { return p.tokens_per_s; });
  double emax = 1.1;
  for (const ScalingPoint& p : points) emax = std::max(emax, p.efficiency * 1.1);
  axes(1, "scaling efficiency (tokens/s per rank vs the first point)", emax, true);
  line(1, emax, "gray", true, [](const ScalingPoint&) { return 1.0; });
  line(1, emax, "darkorange", false, [](const ScalingPoint& p) { return p.efficiency; });
  out += "</svg>\n";
  return out;
}

}  // namespace loom
