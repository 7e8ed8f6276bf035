#include "metrics/append_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "runtime/files.h"

namespace loom {
namespace {

std::atomic<AppendWriteFunction> g_write{nullptr};

ssize_t DoWrite(int fd, const void* data, size_t bytes) {
  AppendWriteFunction f = g_write.load();
  return f != nullptr ? f(fd, data, bytes) : ::write(fd, data, bytes);
}

}  // namespace

void SetAppendWriteFunctionForTesting(AppendWriteFunction write_function) {
  g_write.store(write_function);
}

absl::StatusOr<std::unique_ptr<AppendFile>> AppendFile::Open(const std::string& path, Mode mode) {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
  if (mode == Mode::kTruncate) flags |= O_TRUNC;
  if (mode == Mode::kCreateNew) flags |= O_EXCL;
  const int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat(path, " already exists"));
    return FileError(errno, "open for appending", path);
  }
  const off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    const int err = errno;
    ::close(fd);
    return FileError(err, "seek to the end of", path);
  }
  return std::unique_ptr<AppendFile>(new AppendFile(path, fd, static_cast<int64_t>(end)));
}

AppendFile::~AppendFile() { ::close(fd_); }

absl::Status AppendFile::Append(std::string_view record) {
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t n = DoWrite(fd_, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      // Undo the part that made it, so the file ends with a whole record. (Shrinking a file
      // needs no free space, so this works on a full disk.)
      if (done > 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) == 0) {
        ::lseek(fd_, static_cast<off_t>(size_), SEEK_SET);
      }
      return FileError(err, absl::StrCat("append ", record.size(), " bytes to"), path_);
    }
    done += static_cast<size_t>(n);
  }
  size_ += static_cast<int64_t>(record.size());
  return absl::OkStatus();
}

}  // namespace loom
