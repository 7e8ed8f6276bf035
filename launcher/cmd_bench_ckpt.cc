// `loom bench ckpt [--dir D] [--mb N] [--repeat R]`: checkpoint save and load throughput
// against a plain sequential write (with fsync) and read of the same number of bytes to the
// same disk, in the same run. One process; the model state is synthetic (a table of GPT-like
// 2-D tensors, weights and both moments) so no model needs building.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoint/checkpoint.h"
#include "launcher/command.h"
#include "parallel/world.h"
#include "runtime/files.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Saves and loads a synthetic model state of about N MB (weights and both AdamW moments)\n"
    "as a checkpoint in D (removed afterwards), and writes (with fsync) and reads the same\n"
    "bytes as one plain file, R times each. Prints the best MB/s of each and the median over\n"
    "the rounds of the checkpoint's throughput as a share of the plain one measured right\n"
    "after it (target >= 80%). Reads may come from the page cache, for both alike.";

absl::Status PlainWrite(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return FileError(errno, "create", path);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return FileError(e, "write", path);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    return FileError(e, "fsync", path);
  }
  ::close(fd);
  return FsyncDir(std::filesystem::path(path).parent_path().string());
}

absl::Status PlainRead(const std::string& path, std::string* out) {
  LOOM_ASSIGN_OR_RETURN(*out, ReadFile(path));
  return absl::OkStatus();
}

absl::Status RunBenchCkpt(const std::vector<std::string>& args) {
  std::string dir = "/tmp/loom_bench_ckpt";
  double mb = 256;
  int repeat = 3;
  FlagSet flags("loom bench ckpt", kDescription);
  flags.String("--dir", &dir, "D", "the directory to write in");
  flags.Double("--mb", &mb, "N", "MB of model state").Positive();
  flags.Int("--repeat", &repeat, "R", "rounds").AtLeast(1);
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  // Weights + m + v = 12 bytes per parameter; tensors of 768 x 3072 (or smaller for small N).
  const int64_t params = static_cast<int64_t>(mb * 1e6 / 12);
  const int64_t cols = 768,
                rows_per = std::max<int64_t>(1, std::min<int64_t>(3072, params / cols / 8));
  const int64_t tensors = std::max<int64_t>(1, params / (rows_per * cols));
  std::vector<ParamDesc> descs;
  for (int64_t i = 0; i < tensors; ++i) {
    ParamDesc d;
    d.name = absl::StrCat("blocks.", i, ".weight");
    d.shape = Shape{rows_per, cols};
    descs.push_back(d);
  }
  LOOM_ASSIGN_OR_RETURN(ParamTable table, ParamTable::Create(descs));
  const int64_t n = table.total();
  std::vector<float> w(n), m(n), v(n);
  for (int64_t i = 0; i < n; ++i) {
    w[i] = static_cast<float>(i % 1000) * 1e-3f;
    m[i] = w[i] * 0.5f;
    v[i] = w[i] * w[i];
  }
  CheckpointSources src;
  src.table = &table;
  src.optimizer.owned = {{0, n}};
  src.params = Tensor::View(w.data(), Shape{n}, DType::kF32, CpuDevice());
  src.m = Tensor::View(m.data(), Shape{n}, DType::kF32, CpuDevice());
  src.v = Tensor::View(v.data(), Shape{n}, DType::kF32, CpuDevice());
  CheckpointInfo info;
  info.layout.set_world_size(1);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  LOOM_RETURN_IF_ERROR(MakeDirs(dir));
  World* self = World::Self();
  CheckpointSaver saver(dir + "/ckpt", 0, &self->comm());
  const double bytes = 12.0 * static_cast<double>(n);
  double save_s = 1e30, load_s = 1e30, write_s = 1e30, read_s = 1e30;
  // Per round, the checkpoint's time against the plain one measured right after it: a shared
  // disk's speed drifts, so the median of these paired ratios is the figure to trust.
  std::vector<double> save_ratio, load_ratio;
  double round_save = 0, round_load = 0;
  std::vector<float> w2(n), m2(n), v2(n);
  std::string plain(static_cast<size_t>(bytes), 'x');
  std::memcpy(plain.data(), w.data(), n * 4);
  std::memcpy(plain.data() + n * 4, m.data(), n * 4);
  std::memcpy(plain.data() + n * 8, v.data(), n * 4);
  for (int r = 0; r < repeat; ++r) {
    info.step = r + 1;
    // A new file each time, as the checkpoint writes one.
    const std::string file = absl::StrCat(dir, "/plain_", r, ".bin");
    double plain_write = 0, plain_read = 0;
    auto plain_round = [&]() -> absl::Status {
      Timer t;
      LOOM_RETURN_IF_ERROR(PlainWrite(file, plain));
      plain_write = t.Seconds();
      t.Reset();
      std::string back;
      LOOM_RETURN_IF_ERROR(PlainRead(file, &back));
      plain_read = t.Seconds();
      if (back.size() != plain.size()) return absl::InternalError("bench ckpt: plain read short");
      return absl::OkStatus();
    };
    // Alternate which goes first, so that neither always meets the other's write-back.
    if (r % 2 == 1) LOOM_RETURN_IF_ERROR(plain_round());
    Timer t;
    LOOM_RETURN_IF_ERROR(saver.Save(src, info, false).status());
    round_save = t.Seconds();
    t.Reset();
    LOOM_ASSIGN_OR_RETURN(auto reader, CheckpointReader::Open(dir + "/ckpt/" + StepDirName(r + 1)));
    LOOM_RETURN_IF_ERROR(
        reader->Load(table, src.optimizer, true, w2.data(), nullptr, m2.data(), v2.data()));
    round_load = t.Seconds();
    if (w2 != w || m2 != m || v2 != v) return absl::InternalError("bench ckpt: the reload differs");
    if (r % 2 == 0) LOOM_RETURN_IF_ERROR(plain_round());
    save_s = std::min(save_s, round_save);
    load_s = std::min(load_s, round_load);
    write_s = std::min(write_s, plain_write);
    read_s = std::min(read_s, plain_read);
    save_ratio.push_back(plain_write / round_save);
    load_ratio.push_back(plain_read / round_load);
    std::filesystem::remove(file, ec);
  }

  auto rate = [&](double s) { return bytes / 1e6 / s; };
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::cout << absl::StrFormat(
      "bench ckpt: %.1f MB of model state (%lld tensors of %lld x %lld; weights, m, v), best of "
      "%d, in %s\n"
      "  save  %8.1f MB/s   plain write+fsync %8.1f MB/s   (best of each)   median paired ratio "
      "%5.1f%%\n"
      "  load  %8.1f MB/s   plain read        %8.1f MB/s   (best of each)   median paired ratio "
      "%5.1f%%\n",
      bytes / 1e6, static_cast<long long>(tensors), static_cast<long long>(rows_per),
      static_cast<long long>(cols), repeat, dir, rate(save_s), rate(write_s),
      100.0 * median(save_ratio), rate(load_s), rate(read_s), 100.0 * median(load_ratio));
  std::filesystem::remove_all(dir, ec);
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_ckpt, "bench ckpt",
                      "checkpoint save / load throughput against a plain write / read",
                      RunBenchCkpt);

}  // namespace loom
