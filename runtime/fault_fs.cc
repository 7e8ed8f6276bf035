#include "runtime/fault_fs.h"

#include <cerrno>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultInjectionFileSystem* fs, std::unique_ptr<WritableFile> base)
      : fs_(fs), base_(std::move(base)) {}

  absl::Status Append(std::string_view data) override {
    bool short_write = false, crash = false;
    LOOM_RETURN_IF_ERROR(fs_->Begin(absl::StrCat("append ", data.size(), " bytes"), {path()}, true,
                                    &short_write, &crash));
    absl::Status st;
    if (short_write) {
      st = base_->Append(data.substr(0, data.size() / 2));
      if (st.ok()) st = FileError(ENOSPC, "append (injected short write) to", path());
    } else {
      st = base_->Append(data);
    }
    fs_->Written(path(), base_->Size(), false);
    return Done(st, crash);
  }
  absl::Status Truncate(int64_t size) override {
    bool short_write = false, crash = false;
    LOOM_RETURN_IF_ERROR(
        fs_->Begin(absl::StrCat("truncate to ", size), {path()}, false, &short_write, &crash));
    absl::Status st = base_->Truncate(size);
    fs_->Written(path(), base_->Size(), false);
    return Done(st, crash);
  }
  absl::Status Sync() override {
    bool short_write = false, crash = false;
    LOOM_RETURN_IF_ERROR(fs_->Begin("sync", {path()}, false, &short_write, &crash));
    absl::Status st = base_->Sync();
    if (st.ok()) fs_->Written(path(), base_->Size(), true);
    return Done(st, crash);
  }
  absl::Status Close() override {
    if (closed_) return absl::OkStatus();
    closed_ = true;
    bool short_write = false, crash = false;
    absl::Status begin = fs_->Begin("close", {path()}, false, &short_write, &crash);
    absl::Status st = base_->Close();  // the descriptor goes either way
    if (!begin.ok()) return begin;
    return Done(st, crash);
  }
  int64_t Size() const override { return base_->Size(); }
  const std::string& path() const override { return base_->path(); }

 private:
  absl::Status Done(absl::Status st, bool crash) {
    if (crash) {
      std::lock_guard<std::mutex> lock(fs_->mu_);
      fs_->Crash();
    }
    return st;
  }
  FaultInjectionFileSystem* fs_;
  std::unique_ptr<WritableFile> base_;
  bool closed_ = false;
};

void FaultInjectionFileSystem::FailAt(int64_t n, Fault fault) {
  std::lock_guard<std::mutex> lock(mu_);
  fault_ = fault;
  fail_at_ = fault == Fault::kNone ? 0 : ops_ + n;
  fired_ = false;
}

int64_t FaultInjectionFileSystem::ops() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_;
}

std::vector<std::string> FaultInjectionFileSystem::log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

std::vector<std::string> FaultInjectionFileSystem::touched() const {
  std::lock_guard<std::mutex> lock(mu_);
  return touched_;
}

bool FaultInjectionFileSystem::fired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_;
}

bool FaultInjectionFileSystem::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crashed_;
}

void FaultInjectionFileSystem::ClearLog() {
  std::lock_guard<std::mutex> lock(mu_);
  log_.clear();
  touched_.clear();
}

absl::Status FaultInjectionFileSystem::Begin(const std::string& what,
                                             const std::vector<std::string>& paths, bool is_append,
                                             bool* short_write, bool* crash_after) {
  std::lock_guard<std::mutex> lock(mu_);
  ++ops_;
  std::string line = absl::StrCat(ops_, " ", what);
  for (size_t i = 0; i < paths.size(); ++i) {
    absl::StrAppend(&line, i == 0 ? " " : " -> ", paths[i]);
  }
  const std::string& first = paths.empty() ? std::string() : paths[0];
  if (crashed_) {
    log_.push_back(absl::StrCat(line, " (after the crash: not run)"));
    return FileError(EIO, absl::StrCat(what, " after an injected crash:"), first);
  }
  log_.push_back(line);
  for (const std::string& p : paths) touched_.push_back(p);
  if (ops_ != fail_at_) return absl::OkStatus();
  fired_ = true;
  switch (fault_) {
    case Fault::kNone:
      return absl::OkStatus();
    case Fault::kCrash:
      *crash_after = true;
      return absl::OkStatus();
    case Fault::kShortWrite:
      if (is_append) {
        *short_write = true;
        return absl::OkStatus();
      }
      [[fallthrough]];
    case Fault::kNoSpace:
      return FileError(ENOSPC, absl::StrCat(what, " (injected fault) at"), first);
    case Fault::kIoError:
      return FileError(EIO, absl::StrCat(what, " (injected fault) at"), first);
  }
  return absl::OkStatus();
}

void FaultInjectionFileSystem::Written(const std::string& path, int64_t size, bool synced) {
  std::lock_guard<std::mutex> lock(mu_);
  Sizes& s = files_[path];
  s.current = size;
  if (synced) s.synced = size;
}

void FaultInjectionFileSystem::Crash() {
  crashed_ = true;
  // What was appended since a file's last sync never reached the disk.
  for (const auto& [path, sizes] : files_) {
    if (sizes.current <= sizes.synced) continue;
    auto info = base_->Stat(path);
    if (!info.ok() || !info->is_regular) continue;
    auto f = base_->OpenWritable(path, OpenMode::kAppend);
    if (!f.ok()) continue;
    (void)(*f)->Truncate(sizes.synced);
    (void)(*f)->Close();
  }
}

#define LOOM_FAULT_RUN(what, paths, call)                                \
  bool short_write = false, crash = false;                               \
  LOOM_RETURN_IF_ERROR(Begin(what, paths, false, &short_write, &crash)); \
  auto result = call;                                                    \
  if (crash) {                                                           \
    std::lock_guard<std::mutex> lock(mu_);                               \
    Crash();                                                             \
  }

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionFileSystem::OpenWritable(
    const std::string& path, OpenMode mode) {
  LOOM_FAULT_RUN("open", {path}, base_->OpenWritable(path, mode));
  if (!result.ok()) return result.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    Sizes& s = files_[path];
    s.current = (*result)->Size();
    // A truncation or a new file is not durable before a sync either: pessimistically, a
    // crash leaves the file empty.
    s.synced = mode == OpenMode::kAppend ? s.current : 0;
  }
  return std::unique_ptr<WritableFile>(new FaultWritableFile(this, std::move(*result)));
}

absl::StatusOr<std::string> FaultInjectionFileSystem::ReadFile(const std::string& path) {
  return base_->ReadFile(path);
}

absl::Status FaultInjectionFileSystem::CreateDir(const std::string& path) {
  LOOM_FAULT_RUN("mkdir", {path}, base_->CreateDir(path));
  return result;
}

absl::Status FaultInjectionFileSystem::Rename(const std::string& from, const std::string& to) {
  LOOM_FAULT_RUN("rename", (std::vector<std::string>{from, to}), base_->Rename(from, to));
  if (result.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    // Track the files under their new names (a directory renamed moves its files).
    std::map<std::string, Sizes> moved;
    for (auto it = files_.begin(); it != files_.end();) {
      if (it->first == from || absl::StartsWith(it->first, from + "/")) {
        moved[to + it->first.substr(from.size())] = it->second;
        it = files_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [p, s] : moved) files_[p] = s;
  }
  return result;
}

absl::Status FaultInjectionFileSystem::SyncDir(const std::string& path) {
  LOOM_FAULT_RUN("syncdir", {path}, base_->SyncDir(path));
  return result;
}

absl::Status FaultInjectionFileSystem::Remove(const std::string& path) {
  LOOM_FAULT_RUN("remove", {path}, base_->Remove(path));
  return result;
}

absl::Status FaultInjectionFileSystem::RemoveAll(const std::string& path) {
  LOOM_FAULT_RUN("remove_all", {path}, base_->RemoveAll(path));
  return result;
}

absl::StatusOr<std::vector<std::string>> FaultInjectionFileSystem::ListDir(
    const std::string& path) {
  return base_->ListDir(path);
}

absl::StatusOr<FileInfo> FaultInjectionFileSystem::Stat(const std::string& path) {
  return base_->Stat(path);
}

}  // namespace loom
