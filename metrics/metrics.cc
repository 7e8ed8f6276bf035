#include "metrics/metrics.h"

#include <cerrno>
#include <cmath>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "runtime/files.h"
#include "runtime/fs.h"
#include "runtime/status.h"

namespace loom {

namespace {

constexpr char kMetricsFile[] = "metrics.jsonl";

// The step of a line this logger wrote ({"step":N,...}); nullopt for anything else, such as
// a line cut short by a crash.
std::optional<int64_t> StepOfLine(const std::string& line) {
  static constexpr std::string_view kPrefix = "{\"step\":";
  if (line.size() < kPrefix.size() + 2 || line.compare(0, kPrefix.size(), kPrefix) != 0 ||
      line.back() != '}') {
    return std::nullopt;
  }
  size_t end = line.find_first_of(",}", kPrefix.size());
  int64_t step = 0;
  if (!absl::SimpleAtoi(line.substr(kPrefix.size(), end - kPrefix.size()), &step)) {
    return std::nullopt;
  }
  return step;
}

}  // namespace

std::string FormatCount(double v) {
  if (!std::isfinite(v)) return "-";
  const double a = std::fabs(v);
  const char* suffix = "";
  double scaled = v;
  if (a >= 1e9) {
    scaled = v / 1e9, suffix = "G";
  } else if (a >= 1e6) {
    scaled = v / 1e6, suffix = "M";
  } else if (a >= 1e3) {
    scaled = v / 1e3, suffix = "k";
  } else {
    return absl::StrFormat("%.0f", v);
  }
  const double s = std::fabs(scaled);
  const int decimals = s >= 100 ? 0 : s >= 10 ? 1 : 2;
  return absl::StrFormat("%.*f%s", decimals, scaled, suffix);
}

std::string FormatBytes(int64_t bytes) {
  constexpr double kMiB = 1024.0 * 1024.0;
  constexpr double kGiB = kMiB * 1024.0;
  if (bytes < static_cast<int64_t>(kGiB)) return absl::StrFormat("%.0f MiB", bytes / kMiB);
  return absl::StrFormat("%.1f GiB", bytes / kGiB);
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "-";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.9g", v);
}

std::string FormatConsoleLine(const StepMetrics& m, int64_t total_steps, double elapsed_s,
                              double eta_s) {
  const int width = static_cast<int>(std::to_string(total_steps).size());
  std::string line = absl::StrFormat("step %*d/%d | loss %.6f", width, m.step, total_steps, m.loss);
  if (m.val_loss.has_value()) absl::StrAppendFormat(&line, " | val %.6f", *m.val_loss);
  absl::StrAppendFormat(&line, " | lr %.2e | norm %.2f | %s tok/s", m.lr, m.grad_norm,
                        FormatCount(m.tokens_per_s));
  if (m.mfu.has_value()) absl::StrAppendFormat(&line, " | mfu %.1f%%", *m.mfu * 100.0);
  absl::StrAppend(&line, " | mem ", FormatBytes(m.peak_bytes));
  if (m.skipped_steps > 0) absl::StrAppend(&line, " | skipped ", m.skipped_steps);
  absl::StrAppend(&line, " | ", FormatDuration(elapsed_s));
  if (eta_s >= 0) absl::StrAppend(&line, " / eta ", FormatDuration(eta_s));
  return line;
}

std::string FormatJsonLine(const StepMetrics& m) {
  std::string s = absl::StrCat(
      "{\"step\":", m.step, ",\"loss\":", JsonNumber(m.loss), ",\"lr\":", JsonNumber(m.lr),
      ",\"grad_norm\":", JsonNumber(m.grad_norm), ",\"tokens_per_s\":", JsonNumber(m.tokens_per_s));
  if (m.mfu.has_value()) absl::StrAppend(&s, ",\"mfu\":", JsonNumber(*m.mfu));
  if (m.comm_share.has_value()) absl::StrAppend(&s, ",\"comm_share\":", JsonNumber(*m.comm_share));
  if (m.skipped_steps > 0) absl::StrAppend(&s, ",\"skipped_steps\":", m.skipped_steps);
  absl::StrAppend(&s, ",\"peak_bytes\":", m.peak_bytes);
  if (m.val_loss.has_value()) absl::StrAppend(&s, ",\"val_loss\":", JsonNumber(*m.val_loss));
  s.push_back('}');
  return s;
}

std::vector<std::pair<std::string, float>> TensorBoardScalars(const StepMetrics& m) {
  std::vector<std::pair<std::string, float>> out = {
      {"train/loss", static_cast<float>(m.loss)},
      {"train/lr", static_cast<float>(m.lr)},
      {"train/grad_norm", static_cast<float>(m.grad_norm)},
      {"train/tokens_per_s", static_cast<float>(m.tokens_per_s)},
  };
  if (m.mfu.has_value()) out.emplace_back("train/mfu", static_cast<float>(*m.mfu));
  out.emplace_back("train/peak_memory_gib",
                   static_cast<float>(m.peak_bytes / (1024.0 * 1024.0 * 1024.0)));
  if (m.val_loss.has_value()) out.emplace_back("val/loss", static_cast<float>(*m.val_loss));
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsLogger>> MetricsLogger::Create(const std::string& run_dir) {
  LOOM_RETURN_IF_ERROR(MakeDirs(run_dir));
  std::string path = (std::filesystem::path(run_dir) / kMetricsFile).string();
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> f,
                        AppendFile::Open(path, AppendFile::Mode::kTruncate));
  return std::unique_ptr<MetricsLogger>(new MetricsLogger(std::move(f)));
}

absl::StatusOr<std::unique_ptr<MetricsLogger>> MetricsLogger::OpenForResume(
    const std::string& run_dir, int64_t resume_step) {
  LOOM_RETURN_IF_ERROR(MakeDirs(run_dir));
  std::string path = (std::filesystem::path(run_dir) / kMetricsFile).string();
  if (Exists(Fs(), path)) {
    LOOM_ASSIGN_OR_RETURN(std::string old, ReadFile(path));
    std::string kept;
    for (absl::string_view line : absl::StrSplit(old, '\n')) {
      std::optional<int64_t> step = StepOfLine(std::string(line));
      if (step.has_value() && *step <= resume_step) absl::StrAppend(&kept, line, "\n");
    }
    LOOM_RETURN_IF_ERROR(AtomicWriteFile(path, kept));
  }
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> f,
                        AppendFile::Open(path, AppendFile::Mode::kAppend));
  return std::unique_ptr<MetricsLogger>(new MetricsLogger(std::move(f)));
}

absl::Status MetricsLogger::Log(const StepMetrics& m) {
  std::string line = FormatJsonLine(m);
  line.push_back('\n');
  return file_->Append(line);
}

}  // namespace loom
