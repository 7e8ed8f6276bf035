#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/text_format.h"
#include "runtime/crc32c.h"
#include "runtime/dtype.h"
#include "runtime/fs.h"
#include "runtime/logging.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom {

std::string StepDirName(int64_t step) { return absl::StrFormat("step_%08d", step); }

namespace {
// How often rank 0 reports a save still being written.
constexpr double kSaveReportSeconds = 30;
}  // namespace

namespace {

constexpr char kManifest[] = "manifest.pb";
constexpr char kManifestText[] = "manifest.txt";
constexpr char kLatest[] = "latest";

std::string RankFileName(int rank) { return absl::StrFormat("rank_%05d.bin", rank); }
std::string RankSlicesName(int rank) { return absl::StrFormat("rank_%05d.slices.pb", rank); }

// A final step directory's step ("step_00000042" -> 42), or -1 for any other name.
int64_t StepOfDirName(const std::string& name) {
  if (name.size() != 13 || name.rfind("step_", 0) != 0) return -1;
  int64_t step = 0;
  if (!absl::SimpleAtoi(name.substr(5), &step)) return -1;
  return step;
}

bool HasManifest(const std::string& dir) {
  auto info = Fs().Stat(absl::StrCat(dir, "/", kManifest));
  return info.ok() && info->is_regular;
}

// The test fault hook: LOOM_CKPT_TEST_KILL_AFTER_FILES="RANK:STEP" makes that rank SIGKILL
// itself after writing its data file of that step, before its slice list (a crash mid-save).
void MaybeKillForTest(int rank, int64_t step) {
  const char* env = std::getenv("LOOM_CKPT_TEST_KILL_AFTER_FILES");
  if (env == nullptr) return;
  int r = -1;
  long long s = -1;
  if (std::sscanf(env, "%d:%lld", &r, &s) == 2 && r == rank && s == step) {
    LOOM_LOG_ALL_RANKS(WARNING) << "LOOM_CKPT_TEST_KILL_AFTER_FILES: rank " << rank
                                << " kills itself in the middle of saving step " << step;
    ::kill(::getpid(), SIGKILL);
  }
}

// Host bytes of a buffer (copied off a GPU once).
absl::StatusOr<Tensor> OnHost(const Tensor& t) {
  if (!t.defined() || t.is_cpu()) return t;
  return t.To(CpuDevice());
}

// Writes the chunks back to back into a new file `path` and syncs it (the directory is
// synced at the commit, by the rename). A failed write leaves no file behind.
absl::Status WriteChunks(const std::string& path,
                         const std::vector<std::pair<const char*, size_t>>& chunks) {
  FileSystem& fs = Fs();
  auto file = fs.OpenWritable(path, FileSystem::OpenMode::kTruncate);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("create checkpoint file: ", file.status().message()));
  }
  absl::Status st;
  for (const auto& [data, n] : chunks) {
    st = (*file)->Append(std::string_view(data, n));
    if (!st.ok()) break;
  }
  if (st.ok()) st = (*file)->Sync();
  absl::Status closed = (*file)->Close();
  if (st.ok()) st = closed;
  if (!st.ok()) {
    (void)fs.Remove(path);
    return absl::Status(st.code(), absl::StrCat("write checkpoint file: ", st.message()));
  }
  return absl::OkStatus();
}

absl::Status AgreeAll(Communicator& world, const absl::Status& mine, const std::string& what) {
  double failed[1] = {mine.ok() ? 0.0 : 1.0};
  LOOM_RETURN_IF_ERROR(world.AllReduceHost(absl::MakeSpan(failed, 1), ReduceOp::kSum));
  if (!mine.ok()) return mine;
  if (failed[0] > 0) {
    return absl::AbortedError(absl::StrCat(what, ": ", static_cast<int>(failed[0]),
                                           " other rank(s) failed (see their messages)"));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Saving.

CheckpointSaver::~CheckpointSaver() {
  if (pending_ && pending_->writer.joinable()) pending_->writer.join();
}

absl::Status CheckpointSaver::WriteRankFiles(Pending& p) {
  Timer timer;
  const int rank = world_->rank();
  if (p.size > 0) {
    LOOM_RETURN_IF_ERROR(WriteChunks(absl::StrCat(p.tmp_dir, "/", RankFileName(rank)), p.chunks));
  }
  MaybeKillForTest(rank, p.info.step);
  std::string list;
  if (!p.slices.SerializeToString(&list)) {
    return absl::InternalError("checkpoint: cannot serialise this rank's slice list");
  }
  LOOM_RETURN_IF_ERROR(AtomicWriteFile(absl::StrCat(p.tmp_dir, "/", RankSlicesName(rank)), list));
  p.write_s = timer.Seconds();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SaveStats>> CheckpointSaver::Save(const CheckpointSources& src,
                                                               const CheckpointInfo& info,
                                                               bool async) {
  if (pending_) LOOM_RETURN_IF_ERROR(Finish().status());
  Timer timer;
  auto p = std::make_unique<Pending>();
  p->info = info;
  p->final_dir = absl::StrCat(dir_, "/", StepDirName(info.step));
  p->tmp_dir = p->final_dir + ".tmp";
  // Rank 0 prepares the directory: stale temporary directories of crashed saves go first.
  absl::Status prepared;
  if (world_->rank() == 0) {
    prepared = [&]() -> absl::Status {
      FileSystem& fs = Fs();
      LOOM_RETURN_IF_ERROR(MakeDirs(fs, dir_));
      LOOM_ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListDir(dir_));
      for (const std::string& name : names) {
        // A crash while `latest` was being replaced leaves its temporary file.
        if (name.rfind(absl::StrCat(kLatest, ".tmp-"), 0) == 0) {
          LOOM_RETURN_IF_ERROR(fs.Remove(absl::StrCat(dir_, "/", name)));
          continue;
        }
        if (name.rfind("step_", 0) == 0 &&
            (absl::EndsWith(name, ".tmp") || absl::EndsWith(name, ".old")) &&
            IsDir(fs, absl::StrCat(dir_, "/", name))) {
          LOOM_LOG(INFO) << "checkpoint: removing the incomplete " << dir_ << "/" << name;
          LOOM_RETURN_IF_ERROR(fs.RemoveAll(absl::StrCat(dir_, "/", name)));
        }
      }
      return MakeDirs(fs, p->tmp_dir);
    }();
  }
  LOOM_RETURN_IF_ERROR(AgreeAll(*world_, prepared, absl::StrCat("checkpoint ", p->tmp_dir)));

  // This rank's slices, copied to host memory now: training may change the buffers next.
  absl::Status snap = [&]() -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(std::vector<Region> regions,
                          SavedRegions(*src.table, src.coord, src.optimizer, src.dp_size));
    LOOM_ASSIGN_OR_RETURN(Tensor params, OnHost(src.params));
    LOOM_ASSIGN_OR_RETURN(Tensor master, OnHost(src.master));
    LOOM_ASSIGN_OR_RETURN(Tensor m, OnHost(src.m));
    LOOM_ASSIGN_OR_RETURN(Tensor v, OnHost(src.v));
    p->host = {params, master, m, v};  // keeps GPU buffers' host copies alive
    // Training changes host buffers once Save returns: an async save copies its regions.
    const bool copy = async && src.params.is_cpu();
    int64_t total = 0;
    for (const Region& r : regions) {
      total += r.box.numel() * (r.kind == WEIGHTS ? DTypeSize(params.dtype()) : 4);
    }
    if (copy) p->copy.reserve(total);
    const std::string file = RankFileName(world_->rank());
    int64_t at = 0;
    for (const Region& r : regions) {
      const Tensor& t = r.kind == WEIGHTS  ? params
                        : r.kind == MASTER ? master
                        : r.kind == ADAM_M ? m
                                           : v;
      if (!t.defined()) {
        return absl::InternalError(absl::StrCat("checkpoint: no ", KindName(r.kind), " buffer"));
      }
      const size_t es = DTypeSize(t.dtype());
      const int64_t len = r.box.numel() * static_cast<int64_t>(es);
      if ((r.at + r.box.numel()) * static_cast<int64_t>(es) > static_cast<int64_t>(t.nbytes())) {
        return absl::InternalError(absl::StrCat("checkpoint: ", r.spec->name, " ", KindName(r.kind),
                                                " box ", BoxString(r.box),
                                                " lies outside its buffer ", t.DebugString()));
      }
      const char* from = static_cast<const char*>(t.data()) + r.at * es;
      if (copy) {
        p->copy.append(from, len);
        from = p->copy.data() + at;
      }
      p->chunks.push_back({from, static_cast<size_t>(len)});
      CheckpointSlice* s = p->slices.add_slices();
      s->set_tensor(r.spec->name);
      s->set_kind(r.kind);
      s->set_dtype(std::string(DTypeName(t.dtype())));
      for (int64_t o : r.box.offset) s->add_offset(o);
      for (int64_t e : r.box.extent) s->add_extent(e);
      s->set_file(file);
      s->set_byte_offset(at);
      s->set_length(len);
      s->set_crc32c(Crc32c(from, static_cast<size_t>(len)));
      at += len;
    }
    p->size = at;
    p->slices.set_rank(world_->rank());
    if (total > 0) {
      p->slices.mutable_file()->set_name(file);
      p->slices.mutable_file()->set_size(total);
      p->slices.mutable_file()->set_rank(world_->rank());
    }
    for (const ParamSpec& s : src.table->specs()) {
      if (s.tied_copy) continue;
      CheckpointTensor* t = p->slices.add_tensors();
      t->set_name(s.name);
      for (int64_t d : s.global_shape.dims()) t->add_global_shape(d);
      t->set_zero_rows_from(s.zero_rows_from);
    }
    return absl::OkStatus();
  }();
  p->start_s = timer.Seconds();  // the snapshot's time, which training waits for
  pending_ = std::move(p);
  if (!snap.ok()) {
    pending_->write_status = snap;
    pending_->done = true;
    return Finish();
  }
  // The write runs on a thread in both modes: while it runs, this thread takes part in the
  // heartbeat of Finish (or Poll), so a rank with much to write never leaves the others
  // waiting in one collective until the job's collective timeout.
  Pending* raw = pending_.get();
  raw->async = async;
  raw->writer = std::thread([this, raw, async] {
    // Test hook: hold the background write back so that training surely changes the buffers
    // meanwhile (the snapshot must not see it), or so that a save is slow.
    if (const char* ms = std::getenv("LOOM_CKPT_TEST_ASYNC_DELAY_MS"); ms != nullptr && async) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(ms)));
    }
    // LOOM_CKPT_TEST_WRITE_DELAY_MS="RANK:MS": that rank's write takes MS longer (a slow disk).
    if (const char* env = std::getenv("LOOM_CKPT_TEST_WRITE_DELAY_MS")) {
      int r = -1, ms = 0;
      if (std::sscanf(env, "%d:%d", &r, &ms) == 2 && r == world_->rank()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      }
    }
    raw->write_status = WriteRankFiles(*raw);
    raw->done = true;
  });
  if (!async) return Finish();
  return std::optional<SaveStats>();
}

absl::StatusOr<std::optional<SaveStats>> CheckpointSaver::Poll() {
  if (!pending_) return std::optional<SaveStats>();
  double busy[1] = {pending_->done ? 0.0 : 1.0};
  LOOM_RETURN_IF_ERROR(world_->AllReduceHost(absl::MakeSpan(busy, 1), ReduceOp::kMax));
  if (busy[0] > 0) return std::optional<SaveStats>();
  return Finish();
}

absl::StatusOr<std::optional<SaveStats>> CheckpointSaver::Finish() {
  if (!pending_) return std::optional<SaveStats>();
  Timer wait;
  const bool was_async = pending_->async;
  // The heartbeat: every rank says whether its write still runs, a few times a second, until
  // none does. Each exchange completes at once (every rank is here), so a slow save is never
  // taken for a stalled rank, while a rank that died still ends the job at the collective
  // timeout. Rank 0 reports progress now and then.
  double next_report = kSaveReportSeconds;
  int pause_ms = 1;
  while (true) {
    const bool busy_here = !pending_->done;
    double busy[1] = {busy_here ? 1.0 : 0.0};
    absl::Status beat = world_->AllReduceHost(absl::MakeSpan(busy, 1), ReduceOp::kSum);
    if (!beat.ok()) {
      if (pending_->writer.joinable()) pending_->writer.join();
      pending_.reset();
      return beat;
    }
    if (busy[0] == 0) break;
    if (world_->rank() == 0 && wait.Seconds() >= next_report) {
      LOOM_LOG(INFO) << "checkpoint step " << pending_->info.step << ": " << busy[0]
                     << " rank(s) still writing after " << absl::StrFormat("%.0f", wait.Seconds())
                     << " s";
      next_report += kSaveReportSeconds;
    }
    // Until the next beat, or until this rank's own write ends (a short save costs little).
    for (int ms = 0; ms < pause_ms && !(busy_here && pending_->done); ++ms) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    pause_ms = std::min(pause_ms * 2, 20);
  }
  if (pending_->writer.joinable()) pending_->writer.join();
  const double waited = wait.Seconds();
  Timer commit;
  absl::StatusOr<SaveStats> stats = Commit();
  const double write_s = pending_->write_s, snapshot_s = pending_->start_s;
  pending_.reset();
  if (!stats.ok()) return stats.status();
  // The time training stood still for this save; an async write's time beyond the wait was
  // hidden behind training.
  // (The wait is for the slowest rank's write: the save took that long for the job.)
  stats->seconds = snapshot_s + waited + commit.Seconds();
  stats->hidden_seconds = was_async ? std::max(0.0, write_s - waited) : 0.0;
  if (world_->rank() == 0) {
    const double mb = static_cast<double>(stats->bytes) / 1e6;
    LOOM_LOG(INFO) << absl::StrFormat(
        "checkpoint saved: %s, %.2f MB in %.3f s (%.1f MB/s)%s", stats->path, mb, stats->seconds,
        stats->seconds > 0 ? mb / stats->seconds : 0.0,
        was_async
            ? absl::StrFormat(", %.3f s of writing hidden behind training", stats->hidden_seconds)
            : std::string());
  }
  return std::optional<SaveStats>(*stats);
}

absl::StatusOr<SaveStats> CheckpointSaver::Commit() {
  Pending& p = *pending_;
  const std::string what = absl::StrCat("checkpoint step ", p.info.step, " (", p.tmp_dir, ")");
  LOOM_RETURN_IF_ERROR(AgreeAll(*world_, p.write_status, what));
  double bytes[1] = {static_cast<double>(p.size)};
  LOOM_RETURN_IF_ERROR(world_->AllReduceHost(absl::MakeSpan(bytes, 1), ReduceOp::kSum));
  absl::Status committed;
  if (world_->rank() == 0) {
    committed = [&]() -> absl::Status {
      CheckpointManifest m;
      m.set_format_version(kCheckpointFormatVersion);
      m.set_step(p.info.step);
      m.set_tokens_seen(p.info.tokens_seen);
      *m.mutable_job() = p.info.job;
      *m.mutable_layout() = p.info.layout;
      *m.mutable_data() = p.info.data;
      m.set_run_id(p.info.run_id);
      std::set<std::string> seen;
      for (int r = 0; r < world_->size(); ++r) {
        const std::string path = absl::StrCat(p.tmp_dir, "/", RankSlicesName(r));
        LOOM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
        CheckpointRankSlices rs;
        if (!rs.ParseFromString(bytes)) {
          return absl::DataLossError(absl::StrCat(path, ": not a CheckpointRankSlices message"));
        }
        for (const CheckpointTensor& t : rs.tensors()) {
          if (seen.insert(t.name()).second) *m.add_tensors() = t;
        }
        if (!rs.file().name().empty()) *m.add_files() = rs.file();
        for (const CheckpointSlice& s : rs.slices()) *m.add_slices() = s;
      }
      std::string bin, text;
      m.SerializeToString(&bin);
      google::protobuf::TextFormat::PrintToString(m, &text);
      LOOM_RETURN_IF_ERROR(AtomicWriteFile(absl::StrCat(p.tmp_dir, "/", kManifestText), text));
      LOOM_RETURN_IF_ERROR(AtomicWriteFile(absl::StrCat(p.tmp_dir, "/", kManifest), bin));
      FileSystem& fs = Fs();
      for (int r = 0; r < world_->size(); ++r) {
        LOOM_RETURN_IF_ERROR(fs.Remove(absl::StrCat(p.tmp_dir, "/", RankSlicesName(r))));
      }
      // A directory of the same step (a fresh start over an old run) makes way first.
      if (Exists(fs, p.final_dir)) {
        LOOM_RETURN_IF_ERROR(DurableRename(fs, p.final_dir, p.final_dir + ".old"));
      }
      LOOM_RETURN_IF_ERROR(DurableRename(fs, p.tmp_dir, p.final_dir));
      LOOM_RETURN_IF_ERROR(fs.RemoveAll(p.final_dir + ".old"));
      LOOM_RETURN_IF_ERROR(
          AtomicWriteFile(fs, absl::StrCat(dir_, "/", kLatest), StepDirName(p.info.step) + "\n"));
      LOOM_RETURN_IF_ERROR(fs.SyncDir(dir_));
      if (keep_last_ > 0) {
        std::vector<std::pair<int64_t, std::string>> complete;
        LOOM_ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListDir(dir_));
        for (const std::string& name : names) {
          const int64_t step = StepOfDirName(name);
          const std::string path = absl::StrCat(dir_, "/", name);
          if (step >= 0 && HasManifest(path)) complete.push_back({step, path});
        }
        // Newest first in this run's history: the step just saved, then the older ones from
        // the highest down. Steps numbered above the one just saved were left by the run this
        // one abandoned when it resumed from an older step: they come last, so they are pruned
        // before any of this run's and the checkpoints kept are this run's newest.
        const int64_t saved = p.info.step;
        std::sort(complete.begin(), complete.end(), [saved](const auto& a, const auto& b) {
          const bool a_stale = a.first > saved, b_stale = b.first > saved;
          if (a_stale != b_stale) return b_stale;
          return a.first > b.first;
        });
        for (size_t i = keep_last_; i < complete.size(); ++i) {
          if (complete[i].first == p.info.step) continue;  // the one `latest` names
          LOOM_LOG(INFO) << "checkpoint: removing " << complete[i].second
                         << " (checkpoint.keep_last " << keep_last_ << ")";
          LOOM_RETURN_IF_ERROR(fs.RemoveAll(complete[i].second));
        }
      }
      return absl::OkStatus();
    }();
  }
  LOOM_RETURN_IF_ERROR(AgreeAll(*world_, committed, what));
  SaveStats stats;
  stats.path = p.final_dir;
  stats.bytes = static_cast<int64_t>(bytes[0]);
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Finding.

absl::StatusOr<NewestCheckpoint> FindNewestCompleteCheckpoint(const std::string& dir) {
  NewestCheckpoint found;
  FileSystem& fs = Fs();
  if (!IsDir(fs, dir)) return found;
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListDir(dir));
  std::vector<std::pair<int64_t, std::string>> steps;
  for (const std::string& name : names) {
    const int64_t step = StepOfDirName(name);
    if (step >= 0 && IsDir(fs, absl::StrCat(dir, "/", name))) steps.push_back({step, name});
  }
  std::sort(steps.rbegin(), steps.rend());
  for (const auto& [step, name] : steps) {
    const std::string path = absl::StrCat(dir, "/", name);
    // Open checks the manifest and every data file it names (plain names, real sizes).
    auto reader = CheckpointReader::Open(path);
    if (reader.ok()) {
      found.path = path;
      return found;
    }
    found.skipped.push_back(absl::StrCat(name, " (", reader.status().message(), ")"));
  }
  return found;
}

absl::StatusOr<std::optional<std::string>> LatestCheckpoint(const std::string& dir) {
  const std::string latest = absl::StrCat(dir, "/", kLatest);
  FileSystem& fs = Fs();
  if (!Exists(fs, latest)) {
    // `latest` lost (a failed copy, a cleanup script): the newest complete step directory, as
    // Orbax does, rather than a fresh start over the run's checkpoints.
    LOOM_ASSIGN_OR_RETURN(NewestCheckpoint newest, FindNewestCompleteCheckpoint(dir));
    if (newest.path.empty()) {
      if (!newest.skipped.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            dir, " has no '", kLatest,
            "' file and no complete checkpoint: ", absl::StrJoin(newest.skipped, "; ")));
      }
      return std::optional<std::string>();
    }
    LOOM_LOG(WARNING) << dir << " has no '" << kLatest << "' file: using the newest complete "
                      << "checkpoint, " << newest.path << " (its manifest and data files check)"
                      << (newest.skipped.empty()
                              ? std::string()
                              : absl::StrCat("; skipped: ", absl::StrJoin(newest.skipped, "; ")));
    return std::optional<std::string>(newest.path);
  }
  LOOM_ASSIGN_OR_RETURN(std::string name, fs.ReadFile(latest));
  name = std::string(absl::StripAsciiWhitespace(name));
  const std::string target = absl::StrCat(dir, "/", name);
  if (StepOfDirName(name) < 0 || !HasManifest(target)) {
    return absl::FailedPreconditionError(absl::StrCat(latest, " names '", name,
                                                      "', which is not a complete checkpoint (no ",
                                                      target, "/", kManifest, ")"));
  }
  return std::optional<std::string>(target);
}

absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path) {
  FileSystem& fs = Fs();
  if (!Exists(fs, path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint path '", path, "' does not exist"));
  }
  if (HasManifest(path)) return path;
  LOOM_ASSIGN_OR_RETURN(std::optional<std::string> latest, LatestCheckpoint(path));
  if (latest) return *latest;
  std::vector<std::string> incomplete;
  if (IsDir(fs, path)) {
    auto names = fs.ListDir(path);
    if (names.ok()) {
      for (const std::string& name : *names) {
        if (name.rfind("step_", 0) == 0) incomplete.push_back(name);
      }
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("'", path, "' holds no complete checkpoint: no ", kManifest, " in it and no '",
                   kLatest, "' file",
                   incomplete.empty() ? std::string()
                                      : absl::StrCat(" (step directories without a manifest: ",
                                                     absl::StrJoin(incomplete, ", "), ")")));
}

// ---------------------------------------------------------------------------------------------
// Loading.

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(
    const std::string& step_dir) {
  auto r = std::unique_ptr<CheckpointReader>(new CheckpointReader());
  r->dir_ = step_dir;
  const std::string path = absl::StrCat(step_dir, "/", kManifest);
  auto bytes = ReadFile(path);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("checkpoint manifest: ", bytes.status().message()));
  }
  if (!r->manifest_.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat(path, ": not a checkpoint manifest (corrupt?)"));
  }
  if (r->manifest_.format_version() != kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": checkpoint format version ", r->manifest_.format_version(),
                     ", this build reads version ", kCheckpointFormatVersion));
  }
  LOOM_RETURN_IF_ERROR(r->CheckManifest());
  r->verified_.assign(r->manifest_.slices_size(), false);
  return r;
}

namespace {

// A data file's name in a manifest: a plain name inside the step directory, nothing else.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= 255 &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

// a * b, or nullopt past int64.
std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

}  // namespace

absl::Status CheckpointReader::CheckManifest() {
  const std::string path = absl::StrCat(dir_, "/", kManifest);
  // Data files: plain names inside the step directory, each listed once, present with the
  // recorded size. Every size below is bounded by these real sizes, so nothing a manifest
  // claims makes a reader allocate more than the checkpoint holds.
  FileSystem& fs = Fs();
  int64_t total_bytes = 0;
  for (const CheckpointFile& f : manifest_.files()) {
    if (!IsPlainFileName(f.name())) {
      return absl::DataLossError(
          absl::StrCat(path, ": data file name '", absl::CEscape(f.name()),
                       "' is not a plain file name inside the checkpoint directory (refused)"));
    }
    if (file_sizes_.count(f.name())) {
      return absl::DataLossError(absl::StrCat(path, ": data file ", f.name(), " listed twice"));
    }
    const std::string file = absl::StrCat(dir_, "/", f.name());
    auto info = fs.Stat(file);
    if (!info.ok()) {
      return absl::Status(info.status().code(),
                          absl::StrCat("checkpoint data file: ", info.status().message()));
    }
    if (!info->is_regular) {
      return absl::DataLossError(absl::StrCat(file, " is not a regular file"));
    }
    if (info->size != f.size()) {
      return absl::DataLossError(absl::StrCat(file, " has ", info->size,
                                              " bytes, the manifest records ", f.size(),
                                              " (truncated or overwritten)"));
    }
    file_sizes_[f.name()] = info->size;
    total_bytes += info->size;
  }
  for (const CheckpointTensor& t : manifest_.tensors()) {
    if (tensors_.count(t.name())) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", t.name(), " listed twice"));
    }
    std::optional<int64_t> numel = 1;
    bool ok = t.global_shape_size() >= 1 && t.global_shape_size() <= 2;
    for (int64_t d : t.global_shape()) {
      ok = ok && d >= 1;
      if (ok && numel) numel = CheckedMul(*numel, d);
    }
    // Every saved tensor is covered by its slices, of 2 bytes per element at least (bf16).
    if (!ok || !numel || *numel > total_bytes / 2) {
      return absl::DataLossError(absl::StrCat(
          path, ": tensor ", t.name(), " has global shape [", absl::StrJoin(t.global_shape(), ", "),
          "], more than the ", total_bytes, " bytes of data files could hold (corrupt manifest)"));
    }
    if (t.zero_rows_from() > t.global_shape(0)) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", t.name(), " has zero_rows_from ",
                                              t.zero_rows_from(), " beyond its ", t.global_shape(0),
                                              " rows"));
    }
    tensors_[t.name()] = &t;
  }
  for (int i = 0; i < manifest_.slices_size(); ++i) {
    const CheckpointSlice& s = manifest_.slices(i);
    auto t = tensors_.find(s.tensor());
    auto size = file_sizes_.find(s.file());
    const std::string what = absl::StrCat(path, ": slice ", i, " of ", s.tensor());
    if (t == tensors_.end()) {
      return absl::DataLossError(absl::StrCat(what, " names an unknown tensor"));
    }
    if (size == file_sizes_.end()) {
      return absl::DataLossError(absl::StrCat(
          what, " names data file '", absl::CEscape(s.file()),
          "', which is not in the manifest's file table (refused: a slice reads only the "
          "checkpoint's own files)"));
    }
    const auto& shape = t->second->global_shape();
    bool ok = s.offset_size() == shape.size() && s.extent_size() == shape.size();
    int64_t numel = 1;
    for (int d = 0; ok && d < shape.size(); ++d) {
      ok = s.offset(d) >= 0 && s.extent(d) >= 0 && s.offset(d) <= shape[d] &&
           s.extent(d) <= shape[d] - s.offset(d);
      numel *= ok ? s.extent(d) : 1;  // bounded by the tensor's numel: no overflow
    }
    if (!ok) {
      return absl::DataLossError(absl::StrCat(what,
                                              ": its box lies outside the tensor's global shape [",
                                              absl::StrJoin(shape, ", "), "] (malformed)"));
    }
    auto dtype = ParseDType(s.dtype());
    if (!dtype.ok() || (*dtype != DType::kF32 && *dtype != DType::kBF16) ||
        s.length() != numel * static_cast<int64_t>(DTypeSize(*dtype))) {
      return absl::DataLossError(absl::StrCat(what, ": dtype '", absl::CEscape(s.dtype()),
                                              "' and length ", s.length(),
                                              " do not match its box"));
    }
    if (s.byte_offset() < 0 || s.byte_offset() > size->second - s.length()) {
      return absl::DataLossError(absl::StrCat(dir_, "/", s.file(), " is truncated: ", what,
                                              " (bytes [", s.byte_offset(), ", +", s.length(),
                                              ")) lies past its end (", size->second, " bytes)"));
    }
    index_[{s.tensor(), static_cast<int>(s.kind())}].push_back(i);
  }
  return absl::OkStatus();
}

bool CheckpointReader::Has(const std::string& tensor, CheckpointKind kind) const {
  return index_.count({tensor, static_cast<int>(kind)}) > 0;
}

absl::Status CheckpointReader::CheckTable(const ParamTable& table) const {
  const std::string where = absl::StrCat(dir_, "/", kManifest);
  for (const ParamSpec& s : table.specs()) {
    auto it = tensors_.find(s.name);
    if (it == tensors_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", where, " has no tensor ", s.name, " (the model has it with shape ",
          s.global_shape.ToString(), "): a checkpoint of another model?"));
    }
    const CheckpointTensor& t = *it->second;
    // The real rows first: padding may hide a different vocabulary (257 and 300 both pad to
    // 384 rows at a multiple of 128), and a model of another vocabulary is another model.
    if (t.zero_rows_from() != s.zero_rows_from) {
      auto rows = [](int64_t z) {
        return z >= 0 ? absl::StrCat(z, " real rows (the rest padding)")
                      : std::string("no padding");
      };
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", where, ": tensor ", s.name, " has ", rows(t.zero_rows_from()),
                       ", the model expects ", rows(s.zero_rows_from),
                       ": a checkpoint of another model (model.vocab)?"));
    }
    const std::vector<int64_t>& want = s.global_shape.dims();
    std::vector<int64_t> got(t.global_shape().begin(), t.global_shape().end());
    bool ok = got.size() == want.size();
    for (size_t d = 0; ok && d < want.size(); ++d) {
      if (got[d] == want[d]) continue;
      // A padded vocabulary may be padded differently (it depends on tp): only the padding.
      ok = d == 0 && s.zero_rows_from >= 0 && got[0] >= s.zero_rows_from &&
           want[0] >= s.zero_rows_from;
    }
    if (!ok) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", where, ": tensor ", s.name, " has shape [", absl::StrJoin(got, ", "),
          "] (", t.zero_rows_from() >= 0 ? absl::StrCat(t.zero_rows_from(), " real rows") : "",
          "), the model expects ", s.global_shape.ToString(),
          ": a checkpoint of another model (layers, hidden, vocab)?"));
    }
  }
  for (const ParamSpec& s : table.specs()) {
    if (!Has(s.name, WEIGHTS) && !Has(s.name, MASTER)) {
      return absl::DataLossError(absl::StrCat("checkpoint ", where, " lists tensor ", s.name,
                                              " but saves no slice of it"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const MappedFile*> CheckpointReader::File(const std::string& name) {
  auto it = files_.find(name);
  if (it != files_.end()) return &it->second;
  if (!file_sizes_.count(name)) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir_, ": data file '",
                                            absl::CEscape(name),
                                            "' is not in the manifest's file table (refused)"));
  }
  const std::string path = absl::StrCat(dir_, "/", name);
  auto f = MappedFile::Open(path);
  if (!f.ok()) {
    return absl::Status(f.status().code(),
                        absl::StrCat("checkpoint data file: ", f.status().message()));
  }
  for (const CheckpointFile& cf : manifest_.files()) {
    if (cf.name() == name && static_cast<int64_t>(f->size()) != cf.size()) {
      return absl::DataLossError(absl::StrCat(path, " has ", f->size(),
                                              " bytes, the manifest records ", cf.size(),
                                              " (truncated or overwritten)"));
    }
  }
  return &files_.emplace(name, std::move(*f)).first->second;
}

absl::StatusOr<const uint8_t*> CheckpointReader::SliceData(int index) {
  const CheckpointSlice& s = manifest_.slices(index);
  LOOM_ASSIGN_OR_RETURN(const MappedFile* f, File(s.file()));
  const std::string path = absl::StrCat(dir_, "/", s.file());
  TensorBox box{{s.offset().begin(), s.offset().end()}, {s.extent().begin(), s.extent().end()}};
  const std::string what =
      absl::StrCat("slice of ", s.tensor(), " (", KindName(s.kind()), " ", BoxString(box),
                   ", bytes [", s.byte_offset(), ", ", s.byte_offset() + s.length(), "))");
  auto dtype = ParseDType(s.dtype());
  if (!dtype.ok() || (*dtype != DType::kF32 && *dtype != DType::kBF16) ||
      s.length() != box.numel() * static_cast<int64_t>(DTypeSize(*dtype))) {
    return absl::DataLossError(absl::StrCat(path, ": the manifest's ", what, " has dtype '",
                                            s.dtype(), "' and a length that do not match"));
  }
  if (s.byte_offset() < 0 || s.byte_offset() + s.length() > static_cast<int64_t>(f->size())) {
    return absl::DataLossError(absl::StrCat(path, " is truncated: the ", what,
                                            " lies past its end (", f->size(), " bytes)"));
  }
  const uint8_t* data = f->data() + s.byte_offset();
  if (!verified_[index]) {
    const uint32_t crc = Crc32c(data, static_cast<size_t>(s.length()));
    if (crc != s.crc32c()) {
      return absl::DataLossError(absl::StrFormat(
          "%s: checksum mismatch in the %s: CRC-32C %08x, the manifest records %08x (corrupt)",
          path, what, crc, s.crc32c()));
    }
    verified_[index] = true;
  }
  return data;
}

absl::Status CheckpointReader::ReadBox(const std::string& tensor, CheckpointKind kind,
                                       const TensorBox& box, float* dst) {
  auto it = index_.find({tensor, static_cast<int>(kind)});
  auto t = tensors_.find(tensor);
  if (it == index_.end() || t == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", dir_, " saves no ", KindName(kind), " of tensor ", tensor));
  }
  const int rank = static_cast<int>(box.offset.size());
  if (rank < 1 || rank > 2 || t->second->global_shape_size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: box ", BoxString(box), " of ",
                                                   tensor, " does not match its saved rank"));
  }
  std::fill(dst, dst + box.numel(), 0.0f);
  TensorBox whole;
  for (int64_t d : t->second->global_shape()) {
    whole.offset.push_back(0);
    whole.extent.push_back(d);
  }
  const int64_t need = Intersect(box, whole).numel();
  int64_t covered = 0;
  const int64_t box_cols = rank == 2 ? box.extent[1] : box.extent[0];
  for (int index : it->second) {
    const CheckpointSlice& s = manifest_.slices(index);
    if (s.offset_size() != rank) continue;
    TensorBox sb{{s.offset().begin(), s.offset().end()}, {s.extent().begin(), s.extent().end()}};
    const TensorBox in = Intersect(sb, box);
    if (in.numel() == 0) continue;
    LOOM_ASSIGN_OR_RETURN(const uint8_t* data, SliceData(index));
    const bool bf16 = s.dtype() == "bf16";
    const int64_t rows = rank == 2 ? in.extent[0] : 1,
                  cols = rank == 2 ? in.extent[1] : in.extent[0];
    const int64_t slice_cols = rank == 2 ? sb.extent[1] : sb.extent[0];
    for (int64_t r = 0; r < rows; ++r) {
      int64_t src = 0, out = 0;
      if (rank == 2) {
        src = (in.offset[0] + r - sb.offset[0]) * slice_cols + (in.offset[1] - sb.offset[1]);
        out = (in.offset[0] + r - box.offset[0]) * box_cols + (in.offset[1] - box.offset[1]);
      } else {
        src = in.offset[0] - sb.offset[0];
        out = in.offset[0] - box.offset[0];
      }
      if (bf16) {
        const uint8_t* p = data + src * 2;
        for (int64_t c = 0; c < cols; ++c) {
          uint16_t bits;
          std::memcpy(&bits, p + 2 * c, 2);
          dst[out + c] = Bf16BitsToFloat(bits);
        }
      } else {
        std::memcpy(dst + out, data + src * 4, static_cast<size_t>(cols) * 4);
      }
    }
    covered += in.numel();
  }
  if (covered != need) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", dir_, ": the saved ", KindName(kind), " slices of ", tensor,
                     " cover ", covered, " of the ", need, " elements of box ", BoxString(box),
                     covered > need ? " (overlapping slices)" : " (slices missing)"));
  }
  return absl::OkStatus();
}

absl::Status CheckpointReader::Load(const ParamTable& table, const OptimizerView& optimizer,
                                    bool with_optimizer, float* weights, float* master, float* m,
                                    float* v) {
  LOOM_RETURN_IF_ERROR(CheckTable(table));
  LOOM_ASSIGN_OR_RETURN(std::vector<Region> regions,
                        NeededRegions(table, optimizer, with_optimizer));
  for (const Region& r : regions) {
    CheckpointKind from = r.kind;
    float* dst = nullptr;
    switch (r.kind) {
      case WEIGHTS:
        dst = weights;
        // The fp32 master weights are the exact values where the weights were rounded to bf16.
        if (Has(r.spec->name, MASTER)) from = MASTER;
        break;
      case MASTER:
        dst = master;
        if (!Has(r.spec->name, MASTER)) from = WEIGHTS;  // saved from an f32 model
        break;
      case ADAM_M:
        dst = m;
        break;
      case ADAM_V:
        dst = v;
        break;
      default:
        break;
    }
    if (dst == nullptr) return absl::InternalError("checkpoint Load: no buffer for a region");
    LOOM_RETURN_IF_ERROR(ReadBox(r.spec->name, from, r.box, dst + r.at));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CheckpointReader::VerifyAll() {
  int64_t bytes = 0;
  for (const CheckpointFile& f : manifest_.files()) LOOM_RETURN_IF_ERROR(File(f.name()).status());
  for (int i = 0; i < manifest_.slices_size(); ++i) {
    verified_[i] = false;
    LOOM_RETURN_IF_ERROR(SliceData(i).status());
    bytes += manifest_.slices(i).length();
  }
  return bytes;
}

}  // namespace loom
