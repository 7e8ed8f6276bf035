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
#include "checkpoint/checkpoint_files.h"
#include "google/protobuf/text_format.h"
#include "runtime/crc32c.h"
#include "runtime/dtype.h"
#include "runtime/fs.h"
#include "runtime/logging.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom {

using checkpoint_internal::HasManifest;
using checkpoint_internal::kLatest;
using checkpoint_internal::kManifest;
using checkpoint_internal::kManifestText;
using checkpoint_internal::RankFileName;
using checkpoint_internal::RankSlicesName;
using checkpoint_internal::StepOfDirName;

std::string StepDirName(int64_t step) { return absl::StrFormat("step_%08d", step); }

namespace {
// How often rank 0 reports a save still being written.
constexpr double kSaveReportSeconds = 30;
}  // namespace

namespace {

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
  // The device whose copies into p->staging were queued and not yet waited for (an error
  // between the first copy and the wait must not free the buffer under them).
  Device* unwaited = nullptr;
  absl::Status snap = [&]() -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(std::vector<Region> regions,
                          SavedRegions(*src.table, src.coord, src.optimizer, src.dp_size));
    const Tensor &params = src.params, &master = src.master, &m = src.m, &v = src.v;
    // Only the regions this rank writes leave the device (nothing, and no wait, for a replica
    // that saves nothing): into one buffer of the device's host staging memory (page-locked on
    // CUDA), every copy queued on the device's stream, then one wait with the job's deadline
    // (Device::WaitForCopies); the writer frees the buffer once written. Host buffers are
    // written from where they are, except for an async save, which training would overtake.
    int64_t total = 0;
    for (const Region& r : regions) {
      total += r.box.numel() * (r.kind == WEIGHTS ? DTypeSize(params.dtype()) : 4);
    }
    Device* device = nullptr;  // the device whose copies are waited for
    if (total > 0 && !params.on_host()) {
      device = params.device();
      LOOM_ASSIGN_OR_RETURN(void* buffer, device->AllocateHostStaging(static_cast<size_t>(total)));
      p->staging = std::unique_ptr<char, std::function<void(char*)>>(
          static_cast<char*>(buffer), [device](char* b) { device->FreeHostStaging(b); });
    } else if (async) {
      p->copy.reserve(total);
    }
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
      const char* from = nullptr;
      if (!t.on_host()) {
        if (t.device() != device) {
          return absl::InternalError(absl::StrCat("checkpoint: ", r.spec->name, " ",
                                                  KindName(r.kind), " lies on ", t.device()->Name(),
                                                  ", the weights on ", params.device()->Name()));
        }
        char* dst = p->staging.get() + at;
        unwaited = device;
        LOOM_RETURN_IF_ERROR(device->CopyToHostAsync(
            dst, static_cast<const char*>(t.FlatView(r.at, r.box.numel()).data()), len));
        from = dst;
      } else {
        from = static_cast<const char*>(t.data()) + r.at * es;
        if (async) {
          p->copy.append(from, len);
          from = p->copy.data() + at;
        }
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
      at += len;
    }
    p->size = at;
    if (device != nullptr) {
      LOOM_RETURN_IF_ERROR(device->WaitForCopies(
          absl::StrCat("the checkpoint snapshot (", total, " bytes) of step ", info.step)));
      unwaited = nullptr;
    }
    // The checksums, once the bytes are on the host.
    for (int i = 0; i < p->slices.slices_size(); ++i) {
      const auto& [data, n] = p->chunks[i];
      p->slices.mutable_slices(i)->set_crc32c(Crc32c(data, n));
    }
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
  // Copies queued but not waited for (the wait failed, or an error came between): the buffer
  // is kept (leaked) rather than freed under copies that may still land; the job is ending.
  if (unwaited != nullptr && p->staging) (void)p->staging.release();
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
    // Written (or failed): the staging memory goes back now, off the training thread (on CUDA
    // cudaFreeHost may wait for the device).
    raw->staging.reset();
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

}  // namespace loom
