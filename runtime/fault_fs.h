// FaultInjectionFileSystem: a FileSystem (runtime/fs.h) for tests that passes every operation
// to another one (the posix one by default) and can make one of them fail, or "crash" the
// process after one, as leveldb's fault_injection_test does.
//
// Operations that change the disk are counted from 1: OpenWritable, Append, Truncate, Sync,
// Close, CreateDir, Rename, SyncDir, Remove, RemoveAll. Reads (ReadFile, ListDir, Stat) are
// not counted and never fail. FailAt(n, fault) arms the n-th counted operation from now:
// - kNoSpace / kIoError: it fails with ENOSPC / EIO and changes nothing;
// - kShortWrite: an Append writes the first half of its bytes, then fails with ENOSPC (any
//   other operation fails as kNoSpace);
// - kCrash: it completes, then the process "dies": data appended to a file since its last
//   Sync is lost (the file is cut back to its synced size, as after a power cut) and every
//   later counted operation fails with EIO without reaching the disk. (Directory entries are
//   kept: a rename not yet followed by SyncDir survives here, unlike on some real disks.)
// Every counted operation is logged ("7 rename a -> b") with the paths it touched, so a test
// can name the operation that broke something and check that nothing else was written.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/fs.h"

namespace loom {

class FaultInjectionFileSystem final : public FileSystem {
 public:
  enum class Fault { kNone, kNoSpace, kIoError, kShortWrite, kCrash };

  explicit FaultInjectionFileSystem(FileSystem* base = &PosixFs()) : base_(base) {}

  // Arms the n-th counted operation from now (n >= 1) with `fault`; kNone disarms.
  void FailAt(int64_t n, Fault fault);
  // Counted operations so far, the log ("N op path [-> path]"), every path changed.
  int64_t ops() const;
  std::vector<std::string> log() const;
  std::vector<std::string> touched() const;
  bool fired() const;    // the armed fault happened
  bool crashed() const;  // a kCrash fault happened
  void ClearLog();

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                             OpenMode mode) override;
  absl::StatusOr<std::string> ReadFile(const std::string& path) override;
  absl::Status CreateDir(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& path) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status RemoveAll(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override;
  absl::StatusOr<FileInfo> Stat(const std::string& path) override;

 private:
  friend class FaultWritableFile;
  // Decides the fate of the next counted operation. Returns OK to run it, or the error to
  // return instead; *short_write is set when an Append should write half, *crash_after when
  // the process dies right after it.
  absl::Status Begin(const std::string& what, const std::vector<std::string>& paths, bool is_append,
                     bool* short_write, bool* crash_after);
  void Crash();  // with mu_ held
  void Written(const std::string& path, int64_t size, bool synced);

  FileSystem* base_;
  mutable std::mutex mu_;
  int64_t ops_ = 0;
  int64_t fail_at_ = 0;  // absolute op number, 0 = none
  Fault fault_ = Fault::kNone;
  bool fired_ = false, crashed_ = false;
  std::vector<std::string> log_, touched_;
  struct Sizes {
    int64_t synced = 0, current = 0;
  };
  std::map<std::string, Sizes> files_;  // files written through this file system
};

}  // namespace loom
