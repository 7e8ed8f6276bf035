#include "ops/roofline.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/files.h"
#include "runtime/status.h"
#include "runtime/tensor.h"
#include "runtime/timer.h"

namespace loom::bench {
namespace {

// Best rate of C[m, n] = A[m, k] @ B[k, n] over a few runs after one warm-up.
double SgemmRate(int m, int n, int k) {
  std::vector<float> a(size_t{1} * m * k), b(size_t{1} * k * n), c(size_t{1} * m * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.001f * static_cast<float>(i % 997) - 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.002f * static_cast<float>(i % 991) - 1.0f;
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    Timer t;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data(), k, b.data(), n,
                0.0f, c.data(), n);
    const double s = t.Seconds();
    if (rep > 0) best = std::max(best, 2.0 * m * n * k / s);
  }
  return best;
}

// Best read+write rate of copying 128 MiB, split over the OpenMP threads (ops use the same).
double CopyRate() {
  const size_t bytes = size_t{128} << 20;
  std::vector<char> src(bytes), dst(bytes);
  std::memset(src.data(), 1, bytes);  // touch every page before timing
  std::memset(dst.data(), 2, bytes);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    Timer t;
#pragma omp parallel
    {
      const size_t nt = omp_get_num_threads(), id = omp_get_thread_num();
      const size_t chunk = (bytes + nt - 1) / nt;
      const size_t lo = std::min(bytes, id * chunk), hi = std::min(bytes, lo + chunk);
      std::memcpy(dst.data() + lo, src.data() + lo, hi - lo);
    }
    const double s = t.Seconds();
    if (rep > 0) best = std::max(best, 2.0 * bytes / s);
  }
  return best;
}

// Device-to-device copy of 1 GiB (read + write counted), best of a few.
absl::StatusOr<double> DeviceCopyRate(Device* device) {
  const int64_t n = int64_t{1} << 28;  // f32 elements
  LOOM_ASSIGN_OR_RETURN(Tensor a, Tensor::Zeros(Shape{n}, DType::kF32, device));
  LOOM_ASSIGN_OR_RETURN(Tensor b, Tensor::Zeros(Shape{n}, DType::kF32, device));
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    LOOM_RETURN_IF_ERROR(device->Synchronize());
    Timer t;
    LOOM_RETURN_IF_ERROR(device->CopyWithin(b.data(), a.data(), a.nbytes()));
    LOOM_RETURN_IF_ERROR(device->Synchronize());
    const double s = t.Seconds();
    if (rep > 0) best = std::max(best, 2.0 * a.nbytes() / s);
  }
  return best;
}

double CpuSgemmPeak() { return std::max(SgemmRate(1024, 1024, 1024), SgemmRate(2048, 3072, 768)); }

// "model name" of /proc/cpuinfo, or "unknown cpu".
std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "unknown cpu";
}

// The part of CUDA device `device` (its facts from the driver).
absl::StatusOr<GpuPart> PartOf(Device* device) {
  LOOM_ASSIGN_OR_RETURN(CudaDeviceFacts facts, GetCudaDeviceFacts(device->index()));
  return GpuPartFor(facts.name, facts.sm_count, facts.total_memory_bytes);
}

}  // namespace

absl::StatusOr<GpuPart> GpuPartFor(const std::string& device_name, int sm_count,
                                   size_t memory_bytes) {
  const double gib = static_cast<double>(memory_bytes) / (1 << 30);
  const bool nvl = device_name.find("NVL") != std::string::npos;
  // Datasheet figures (NVIDIA H100 and H200 product briefs), dense.
  if (device_name.find("H200") != std::string::npos) {
    if (nvl) return GpuPart{"H200 NVL", 835e12, 417e12, 60e12, 4.8e12};
    return GpuPart{"H200 SXM", 989.4e12, 494.7e12, 66.9e12, 4.8e12};
  }
  if (device_name.find("H100") != std::string::npos) {
    if (device_name.find("PCIe") != std::string::npos || sm_count == 114) {
      return GpuPart{"H100 PCIe", 756.5e12, 378e12, 51.2e12, 2.0e12};
    }
    if (nvl || gib > 90) return GpuPart{"H100 NVL", 835e12, 417e12, 60e12, 3.9e12};
    if (sm_count == 132 || sm_count == 0)
      return GpuPart{"H100 SXM", 989.4e12, 494.7e12, 66.9e12, 3.35e12};
  }
  return absl::NotFoundError(absl::StrFormat(
      "no roofline is known for %s (%d SMs, %.0f GiB): loom knows H100 SXM, H100 PCIe, H100 NVL, "
      "H200 and H200 NVL; add the part's dense bf16 rate and HBM bandwidth to "
      "ops/roofline.cc (GpuPartFor)",
      device_name, sm_count, gib));
}

std::string GemmPeakCachePath() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg != '\0') return absl::StrCat(xdg, "/loom/gemm_peak.tsv");
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return absl::StrCat(home, "/.cache/loom/gemm_peak.tsv");
  return "";
}

namespace {

// The cache's key for this process: CPU model and thread counts.
std::string CpuPeakKey() {
  // Tabs and newlines would break the file's lines; a CPU name has none, but be safe.
  std::string key = absl::StrCat(CpuModel(), " | omp ", omp_get_max_threads(), " | openblas ",
                                 openblas_get_num_threads());
  for (char& ch : key) {
    if (ch == '\t' || ch == '\n') ch = ' ';
  }
  return key;
}

}  // namespace

absl::StatusOr<bool> RaiseCachedGemmPeak(Device* device, double flops) {
  const std::string path = GemmPeakCachePath();
  if (!device->is_cpu() || path.empty() || !(flops > 0)) return false;
  const std::string key = CpuPeakKey();
  std::string cached;
  if (auto text = ReadFile(path); text.ok()) cached = *text;
  std::string updated;
  bool found = false;
  for (absl::string_view line : absl::StrSplit(cached, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
    double old = 0;
    if (fields.size() == 2 && fields[0] == key && absl::SimpleAtod(fields[1], &old)) {
      if (old >= flops) return false;
      if (found) continue;  // one entry per key
      found = true;
      absl::StrAppend(&updated, key, "\t", absl::StrFormat("%.6g", flops), "\n");
      continue;
    }
    absl::StrAppend(&updated, line, "\n");
  }
  if (!found) absl::StrAppend(&updated, key, "\t", absl::StrFormat("%.6g", flops), "\n");
  LOOM_RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/'))));
  LOOM_RETURN_IF_ERROR(AtomicWriteFile(path, updated));
  return true;
}

absl::StatusOr<GemmPeakFlops> GemmPeak(Device* device) {
  GemmPeakFlops peak;
  if (!device->is_cpu()) {
    LOOM_ASSIGN_OR_RETURN(GpuPart part, PartOf(device));
    peak.flops = part.bf16_flops;
    peak.description = absl::StrFormat("datasheet %.1f TFLOP/s dense bf16 of the %s (%s)",
                                       peak.flops / 1e12, part.name, device->Name());
    return peak;
  }
  const std::string key = CpuPeakKey();
  const std::string path = GemmPeakCachePath();
  std::string cached;
  if (!path.empty()) {
    auto text = ReadFile(path);
    if (text.ok()) cached = *text;
  }
  for (absl::string_view line : absl::StrSplit(cached, '\n')) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
    double flops = 0;
    if (fields.size() == 2 && fields[0] == key && absl::SimpleAtod(fields[1], &flops) &&
        flops > 0) {
      peak.flops = flops;
      peak.description = absl::StrFormat("measured cblas_sgemm peak %.1f GFLOP/s (cached in %s)",
                                         flops / 1e9, path);
      return peak;
    }
  }
  peak.flops = CpuSgemmPeak();
  peak.description = absl::StrFormat("measured cblas_sgemm peak %.1f GFLOP/s", peak.flops / 1e9);
  if (!path.empty()) {
    std::string updated = cached;
    if (!updated.empty() && updated.back() != '\n') updated.push_back('\n');
    absl::StrAppend(&updated, key, "\t", absl::StrFormat("%.6g", peak.flops), "\n");
    const std::string dir = path.substr(0, path.rfind('/'));
    if (MakeDirs(dir).ok() && AtomicWriteFile(path, updated).ok()) {
      absl::StrAppend(&peak.description, " (now cached in ", path, ")");
    }
  }
  return peak;
}

absl::StatusOr<Roofline> GetRoofline(Device* device) {
  Roofline r;
  if (device->is_cpu()) {
    const double cube = SgemmRate(1024, 1024, 1024);
    const double mlp = SgemmRate(2048, 3072, 768);
    r.flops = std::max(cube, mlp);
    r.bytes_per_s = CopyRate();
    r.measured_copy_bps = r.bytes_per_s;
    r.description = absl::StrFormat(
        "compute: measured cblas_sgemm, best of 1024^3 (%.1f GFLOP/s) and "
        "2048x3072x768 (%.1f GFLOP/s)\nmemory: measured memcpy of 128 MiB over %d OpenMP "
        "threads, read+write bytes: %.1f GB/s",
        cube / 1e9, mlp / 1e9, omp_get_max_threads(), r.bytes_per_s / 1e9);
    return r;
  }
  const std::string name = device->Name();
  LOOM_ASSIGN_OR_RETURN(GpuPart part, PartOf(device));
  r.flops = part.bf16_flops;
  r.bytes_per_s = part.hbm_bytes_per_s;
  LOOM_ASSIGN_OR_RETURN(r.measured_copy_bps, DeviceCopyRate(device));
  r.description = absl::StrFormat(
      "compute: datasheet %.1f TFLOP/s dense bf16 of the %s (%s)\n"
      "memory: datasheet %.2f TB/s HBM; this run measured a 1 GiB device copy at %.2f TB/s "
      "(read + write)",
      r.flops / 1e12, part.name, name, r.bytes_per_s / 1e12, r.measured_copy_bps / 1e12);
  return r;
}

}  // namespace loom::bench
