// `loom bench ckpt [--dir D] [--mb N] [--repeat R]`: checkpoint save and load throughput
// against a plain sequential write (with fsync) and read of the same number of bytes to the
// same disk, in the same run. The model state is synthetic (a table of GPT-like 2-D tensors,
// weights and both moments) so no model needs building. Under mpirun every rank is a
// data-parallel replica of that state (plain optimizer): the save spreads the writing over
// them (checkpoint/slices.h), and the figures are aggregates over the ranks, against every
// rank writing (and reading) its share of the same bytes as a plain file at once.
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
    "after it (target >= 80%). Reads may come from the page cache, for both alike.\n"
    "Under mpirun (mpirun -np 4 loom bench ckpt ...) every rank is a data-parallel replica: the\n"
    "save spreads the writing over the ranks, and MB/s are aggregates over them (load: every\n"
    "rank reads the whole state).";

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
  LOOM_ASSIGN_OR_RETURN(World * world, World::Get());
  Communicator& comm = world->comm();
  const int rank = comm.rank(), ranks = comm.size();
  // All ranks start a timed phase together; the phase ends when the last one is done.
  auto barrier = [&]() -> absl::Status {
    double x[1] = {0};
    return comm.AllReduceHost(absl::MakeSpan(x, 1), ReduceOp::kSum);
  };
  CheckpointSources src;
  src.table = &table;
  src.coord.dp = rank;
  src.dp_size = ranks;
  src.optimizer.owned = {{0, n}};
  src.params = Tensor::View(w.data(), Shape{n}, DType::kF32, CpuDevice());
  src.m = Tensor::View(m.data(), Shape{n}, DType::kF32, CpuDevice());
  src.v = Tensor::View(v.data(), Shape{n}, DType::kF32, CpuDevice());
  CheckpointInfo info;
  info.layout.set_world_size(ranks);
  info.layout.set_dp(ranks);
  info.layout.set_tp(1);
  info.layout.set_pp(1);
  std::error_code ec;
  if (rank == 0) {
    std::filesystem::remove_all(dir, ec);
    LOOM_RETURN_IF_ERROR(MakeDirs(dir));
  }
  LOOM_RETURN_IF_ERROR(barrier());
  CheckpointSaver saver(dir + "/ckpt", 0, &comm);
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
  // This rank's share of the plain bytes, as the checkpoint spreads them.
  const size_t share_begin = plain.size() * rank / ranks,
               share_end = plain.size() * (rank + 1) / ranks;
  const std::string my_share = plain.substr(share_begin, share_end - share_begin);
  for (int r = 0; r < repeat; ++r) {
    info.step = r + 1;
    // A new file each time, as the checkpoint writes one.
    auto file_of = [&](int k) { return absl::StrCat(dir, "/plain_", r, "_", k, ".bin"); };
    double plain_write = 0, plain_read = 0;
    auto plain_round = [&]() -> absl::Status {
      LOOM_RETURN_IF_ERROR(barrier());
      Timer t;
      LOOM_RETURN_IF_ERROR(PlainWrite(file_of(rank), my_share));
      LOOM_RETURN_IF_ERROR(barrier());
      plain_write = t.Seconds();
      t.Reset();
      size_t got = 0;
      for (int k = 0; k < ranks; ++k) {  // every rank reads the whole, as a load does
        std::string back;
        LOOM_RETURN_IF_ERROR(PlainRead(file_of(k), &back));
        got += back.size();
      }
      LOOM_RETURN_IF_ERROR(barrier());
      plain_read = t.Seconds();
      if (got != plain.size()) return absl::InternalError("bench ckpt: plain read short");
      return absl::OkStatus();
    };
    // Alternate which goes first, so that neither always meets the other's write-back.
    if (r % 2 == 1) LOOM_RETURN_IF_ERROR(plain_round());
    LOOM_RETURN_IF_ERROR(barrier());
    Timer t;
    LOOM_RETURN_IF_ERROR(saver.Save(src, info, false).status());
    round_save = t.Seconds();
    LOOM_RETURN_IF_ERROR(barrier());
    t.Reset();
    LOOM_ASSIGN_OR_RETURN(auto reader, CheckpointReader::Open(dir + "/ckpt/" + StepDirName(r + 1)));
    LOOM_RETURN_IF_ERROR(
        reader->Load(table, src.optimizer, true, w2.data(), nullptr, m2.data(), v2.data()));
    LOOM_RETURN_IF_ERROR(barrier());
    round_load = t.Seconds();
    if (w2 != w || m2 != m || v2 != v) return absl::InternalError("bench ckpt: the reload differs");
    if (r % 2 == 0) LOOM_RETURN_IF_ERROR(plain_round());
    save_s = std::min(save_s, round_save);
    load_s = std::min(load_s, round_load);
    write_s = std::min(write_s, plain_write);
    read_s = std::min(read_s, plain_read);
    save_ratio.push_back(plain_write / round_save);
    load_ratio.push_back(plain_read / round_load);
    std::filesystem::remove(file_of(rank), ec);
  }

  if (rank != 0) return absl::OkStatus();
  auto rate = [&](double s) { return bytes / 1e6 / s; };
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::cout << absl::StrFormat(
      "bench ckpt: %.1f MB of model state (%lld tensors of %lld x %lld; weights, m, v), best of "
      "%d, in %s%s\n"
      "  save  %8.1f MB/s   plain write+fsync %8.1f MB/s   (best of each)   median paired ratio "
      "%5.1f%%\n"
      "  load  %8.1f MB/s   plain read        %8.1f MB/s   (best of each)   median paired ratio "
      "%5.1f%%\n",
      bytes / 1e6, static_cast<long long>(tensors), static_cast<long long>(rows_per),
      static_cast<long long>(cols), repeat, dir,
      ranks > 1 ? absl::StrFormat("; %d ranks (dp replicas), aggregate MB/s: each rank saves "
                                  "1/%d, each loads (reads) the whole",
                                  ranks, ranks)
                : std::string(),
      rate(save_s), rate(write_s), 100.0 * median(save_ratio), ranks * rate(load_s),
      ranks * rate(read_s), 100.0 * median(load_ratio));
  std::filesystem::remove_all(dir, ec);
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_ckpt, "bench ckpt",
                      "checkpoint save / load throughput against a plain write / read",
                      RunBenchCkpt);

}  // namespace loom
