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

std::vector<double> NiceTicks(double max, int max_intervals) {
  max_intervals = std::max(1, max_intervals);
  if (!(max > 0) || !std::isfinite(max)) return {0, 1};
  // The step: 1, 2 or 5 times a power of ten, the smallest that covers max in max_intervals.
  const double raw = max / max_intervals;
  int exponent = static_cast<int>(std::floor(std::log10(raw)));
  int mantissa = 1;
  for (;;) {
    const double step = mantissa * std::pow(10.0, exponent);
    if (std::ceil(max / step - 1e-9) <= max_intervals) break;
    if (mantissa == 1) {
      mantissa = 2;
    } else if (mantissa == 2) {
      mantissa = 5;
    } else {
      mantissa = 1;
      ++exponent;
    }
  }
  const double step = mantissa * std::pow(10.0, exponent);
  const int n = std::max(1, static_cast<int>(std::ceil(max / step - 1e-9)));
  std::vector<double> ticks;
  for (int k = 0; k <= n; ++k) {
    // k * mantissa is exact; one multiplication or division by an exact power of ten rounds once,
    // so 3 x 0.2 prints as 0.6.
    const double units = static_cast<double>(k) * mantissa;
    ticks.push_back(exponent >= 0 ? units * std::pow(10.0, exponent)
                                  : units / std::pow(10.0, -exponent));
  }
  return ticks;
}

namespace {

// A tick label: 50k, 1.5M, 0.5, 120%.
std::string TickLabel(double v, bool percent) {
  if (percent) return absl::StrFormat("%g%%", std::round(100 * v * 1e6) / 1e6);
  const double a = std::fabs(v);
  if (a >= 1e9) return absl::StrFormat("%gG", v / 1e9);
  if (a >= 1e6) return absl::StrFormat("%gM", v / 1e6);
  if (a >= 1e3) return absl::StrFormat("%gk", v / 1e3);
  return absl::StrFormat("%g", v);
}

}  // namespace

std::string ScalingSvg(const std::vector<ScalingPoint>& points, ScalingMode mode) {
  // Two panels side by side: tokens/s (measured against the ideal line) and scaling efficiency,
  // ranks on a log2 axis with a tick at each point. Each panel: its title, a legend row under
  // it (outside the plot, so it never covers a line), round y ticks with light grid lines.
  constexpr double kW = 400, kH = 290, kLeft = 62, kTop = 50, kPlotW = 300, kPlotH = 190;
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"%.0f\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      2 * kW, kH, kSvgFontSize);
  if (points.empty()) return out + "</svg>\n";
  const double r0 = points.front().ranks, r1 = std::max<double>(points.back().ranks, r0 * 2);
  auto x = [&](double panel, double ranks) {
    return panel * kW + kLeft + kPlotW * std::log2(ranks / r0) / std::log2(r1 / r0);
  };
  auto text = [&](double tx, double ty, const char* anchor, const std::string& s,
                  const char* extra = "") {
    absl::StrAppendFormat(&out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>%s</text>\n", tx,
                          ty, anchor, extra, s);
  };
  struct Series {
    std::string label, color;
    bool dashed;
  };
  auto axes = [&](double panel, const std::string& title, const std::vector<double>& ticks,
                  bool percent, const std::vector<Series>& legend) {
    const double x0 = panel * kW + kLeft, top = ticks.back();
    text(panel * kW + 12, 20, "start", title, " font-size=\"13\" font-weight=\"bold\"");
    // Legend: a swatch and its label per series, left to right under the title.
    double lx = panel * kW + 12;
    for (const Series& s : legend) {
      absl::StrAppendFormat(&out,
                            "<line x1=\"%.1f\" y1=\"34\" x2=\"%.1f\" y2=\"34\" stroke=\"%s\" "
                            "stroke-width=\"2\"%s/>\n",
                            lx, lx + 22, s.color, s.dashed ? " stroke-dasharray=\"5,4\"" : "");
      if (!s.dashed) {
        absl::StrAppendFormat(&out,
                              "<circle cx=\"%.1f\" cy=\"34\" r=\"3.5\" fill=\"%s\" "
                              "stroke=\"white\"/>\n",
                              lx + 11, s.color);
      }
      text(lx + 28, 38, "start", s.label);
      lx += 28 + SvgTextWidth(s.label, kSvgFontSize) + 18;
    }
    for (double v : ticks) {
      const double y = kTop + kPlotH - kPlotH * v / top;
      absl::StrAppendFormat(&out,
                            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                            "stroke=\"#e0e0e0\"/>\n",
                            x0, y, x0 + kPlotW, y);
      text(x0 - 5, y + 4, "end", TickLabel(v, percent));
    }
    absl::StrAppendFormat(
        &out,
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n",
        x0, kTop, x0, kTop + kPlotH, x0, kTop + kPlotH, x0 + kPlotW, kTop + kPlotH);
    for (const ScalingPoint& p : points) {
      text(x(panel, p.ranks), kTop + kPlotH + 15, "middle", absl::StrCat(p.ranks));
    }
    text(x0 + kPlotW / 2, kTop + kPlotH + 33, "middle", "ranks");
  };
  // A series: a polyline, with a marker on each point when it is measured.
  auto series = [&](double panel, double top, const Series& s, bool markers, auto value_of) {
    std::string pts, dots;
    for (const ScalingPoint& p : points) {
      const double px = x(panel, p.ranks), py = kTop + kPlotH - kPlotH * value_of(p) / top;
      absl::StrAppendFormat(&pts, "%.1f,%.1f ", px, py);
      if (markers) {
        absl::StrAppendFormat(&dots,
                              "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\" "
                              "stroke=\"white\"/>\n",
                              px, py, s.color);
      }
    }
    absl::StrAppendFormat(
        &out, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", pts,
        s.color, s.dashed ? " stroke-dasharray=\"5,4\"" : "");
    out += dots;
  };

  const double base = points.front().tokens_per_s / points.front().ranks;
  double ymax = 0;
  for (const ScalingPoint& p : points) ymax = std::max({ymax, p.tokens_per_s, base * p.ranks});
  const std::vector<double> yticks = NiceTicks(ymax * 1.02);
  const Series measured{"measured", "steelblue", false}, ideal{"ideal (linear)", "gray", true};
  axes(0, absl::StrCat("tokens/s, ", mode == ScalingMode::kWeak ? "weak" : "strong", " scaling"),
       yticks, false, {measured, ideal});
  series(0, yticks.back(), ideal, false, [&](const ScalingPoint& p) { return base * p.ranks; });
  series(0, yticks.back(), measured, true, [](const ScalingPoint& p) { return p.tokens_per_s; });

  double emax = 1.0;
  for (const ScalingPoint& p : points) emax = std::max(emax, p.efficiency);
  const std::vector<double> eticks = NiceTicks(emax * 1.05);
  const Series efficiency{"per rank vs the first point", "darkorange", false},
      full{"ideal 100%", "gray", true};
  axes(1, "scaling efficiency", eticks, true, {efficiency, full});
  series(1, eticks.back(), full, false, [](const ScalingPoint&) { return 1.0; });
  series(1, eticks.back(), efficiency, true, [](const ScalingPoint& p) { return p.efficiency; });
  out += "</svg>\n";
  return out;
}

double SvgTextWidth(absl::string_view text, double font_size) {
  // Average advance of sans-serif glyphs (DejaVu Sans, what rsvg and browsers on Linux fall back
  // to): about 0.62 em, narrower for i, l, 1, spaces and punctuation. An upper-ish estimate.
  double em = 0;
  for (char c : text) {
    if (absl::string_view("il.,:;'|! ").find(c) != absl::string_view::npos) {
      em += 0.32;
    } else if (absl::string_view("mwMW%").find(c) != absl::string_view::npos) {
      em += 0.92;
    } else if (c >= 'A' && c <= 'Z') {
      em += 0.70;
    } else {
      em += 0.62;
    }
  }
  return em * font_size;
}

}  // namespace loom
