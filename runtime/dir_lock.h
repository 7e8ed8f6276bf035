// DirLock: one job at a time in a directory (checkpoint.dir, logging.run_dir). The lock is an
// flock(2) on <dir>/.loom.lock, a file that names its holder ("host H pid P started T"):
// - a second job is refused (InvalidArgument, a job problem: exit code 2) naming the holder;
// - the kernel drops the lock when its holder dies however it dies, so a lock file left by a
//   dead job is taken over, with a warning naming the job that left it.
// flock works between processes of one host and over NFSv4 (as a POSIX lock); on a file system
// without locks Acquire fails with the OS's reason rather than pretending.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace loom {

class DirLock {
 public:
  // Creates `dir` if needed and locks it; `field` names it in messages ("checkpoint.dir").
  static absl::StatusOr<std::unique_ptr<DirLock>> Acquire(const std::string& dir,
                                                          const std::string& field);
  ~DirLock();  // releases the lock (the file stays, naming its last holder)
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  DirLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

// Why a job may not use `dir` now ("checkpoint.dir D is in use by ..."), or empty: probes the
// lock without keeping it. For `loom config check`.
std::string DirLockProblem(const std::string& dir, const std::string& field);

// "host H pid P started 2026-12-06 08:30:00 UTC" for this process.
std::string ThisProcessDescription();

}  // namespace loom
