#include "runtime/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/files.h"
#include "runtime/fs.h"
#include "runtime/logging.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kLockFile[] = ".loom.lock";

std::string Holder(int fd) {
  std::string text(512, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  std::string out(absl::StripAsciiWhitespace(text));
  return out.empty() ? "a job that did not say who it is" : out;
}

}  // namespace

std::string ThisProcessDescription() {
  static const std::string description = [] {
    char host[256] = {0};
    ::gethostname(host, sizeof(host) - 1);
    return absl::StrCat(
        "host ", host, " pid ", ::getpid(), " started ",
        absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone()));
  }();
  return description;
}

absl::StatusOr<std::unique_ptr<DirLock>> DirLock::Acquire(const std::string& dir,
                                                          const std::string& field) {
  LOOM_RETURN_IF_ERROR(MakeDirs(dir));
  const std::string path = absl::StrCat(dir, "/", kLockFile);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return FileError(errno, absl::StrCat(field, ": create the lock file"), path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = Holder(fd);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " ", dir, " is in use by another job (", holder, "; lock ", path,
          "): two jobs in one directory overwrite each other's checkpoints and metrics; wait "
          "for it to end or choose another directory"));
    }
    return FileError(err, absl::StrCat(field, ": lock"), path);
  }
  // Free but not empty: its holder ended without releasing it (killed, or its node lost).
  const std::string previous = Holder(fd);
  struct stat st;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    LOOM_LOG(WARNING) << field << " " << dir << ": taking over the lock left by " << previous
                      << ", which no longer holds it (that job ended without releasing it)";
  }
  const std::string me = ThisProcessDescription() + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    const int err = errno;
    ::close(fd);
    return FileError(err, absl::StrCat(field, ": write the lock file"), path);
  }
  return std::unique_ptr<DirLock>(new DirLock(path, fd));
}

DirLock::~DirLock() {
  // Truncated first: an empty lock file is one released cleanly (no warning for the next job).
  if (::ftruncate(fd_, 0) != 0) {
    // Nothing to do: the next job only warns.
  }
  ::close(fd_);
}

std::string DirLockProblem(const std::string& dir, const std::string& field) {
  const std::string path = absl::StrCat(dir, "/", kLockFile);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";  // no lock file: nobody holds it
  std::string problem;
  // Held by this very process (loom train checks the job again once it holds its locks).
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK &&
      Holder(fd) != ThisProcessDescription()) {
    problem = absl::StrCat(field, " ", dir, " is in use by another job (", Holder(fd), "; lock ",
                           path, ")");
  } else {
    ::flock(fd, LOCK_UN);
  }
  ::close(fd);
  return problem;
}

}  // namespace loom
