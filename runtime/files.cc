#include "runtime/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace loom {

namespace {

// The directory holding `path` ("." for a bare name, "/" for entries of the root).
std::string ParentDir(const std::string& path) {
  size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;  // ignore trailing slashes
  size_t slash = path.rfind('/', end - 1);
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// close() that reports its error (on NFS a failed close can be the first sign of a lost write).
absl::Status CloseFd(int fd, const std::string& path) {
  if (::close(fd) != 0) return FileError(errno, "close", path);
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return FileError(errno, "write", path);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FsyncFd(int fd, const std::string& path) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return FileError(errno, "fsync", path);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FileError(int err, std::string_view what, const std::string& path) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(std::string(what), " '", path, "': ", std::strerror(err)));
}

absl::Status AtomicWriteFile(const std::string& path, std::string_view bytes) {
  // Unique per process and call, so concurrent writers never share a temporary file.
  static std::atomic<uint64_t> counter{0};
  std::string tmp = absl::StrCat(path, ".tmp-", ::getpid(), "-", counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return FileError(errno, "create temporary file for", path);
  absl::Status st = WriteAll(fd, bytes, tmp);
  if (st.ok()) st = FsyncFd(fd, tmp);
  absl::Status close_st = CloseFd(fd, tmp);
  if (st.ok()) st = close_st;
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = FileError(errno, absl::StrCat("rename '", tmp, "' to"), path);
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(ParentDir(path));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "open", path);
  // Read straight into the result; one byte beyond the expected size shows EOF without a
  // second allocation. Files that grow (or report no size, like /proc) just grow the buffer.
  struct stat st;
  size_t expected = 0;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) expected = static_cast<size_t>(st.st_size);
  std::string out(std::max<size_t>(expected + 1, 4096), '\0');
  size_t len = 0;
  while (true) {
    if (len == out.size()) out.resize(2 * out.size());
    ssize_t n = ::read(fd, &out[len], out.size() - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return FileError(err, "read", path);
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  ::close(fd);  // read-only: nothing to lose
  out.resize(len);
  return out;
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("MakeDirs: empty path");
  // Create each prefix ending before a '/', then the whole path.
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    if (path[pos - 1] == '/') continue;  // "a//b" or trailing slash: prefix already handled
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) == 0) continue;
    int err = errno;
    struct stat st;
    if (err == EEXIST || err == EROFS || err == EACCES) {
      // Existing directories are fine (also in read-only or unwritable parents).
      if (::stat(prefix.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) continue;
        return absl::FailedPreconditionError(absl::StrCat(
            "MakeDirs '", path, "': '", prefix, "' exists and is not a directory"));
      }
    }
    return FileError(err, "mkdir", prefix);
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "open directory", path);
  absl::Status st = FsyncFd(fd, path);
  ::close(fd);
  return st;
}

absl::Status DurableRename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return FileError(errno, absl::StrCat("rename '", from, "' to"), to);
  }
  std::string to_dir = ParentDir(to), from_dir = ParentDir(from);
  absl::Status st = FsyncDir(to_dir);
  if (st.ok() && from_dir != to_dir) st = FsyncDir(from_dir);
  return st;
}

absl::StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return FileError(err, "stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("mmap '", path, "': not a regular file (a directory or device?)"));
  }
  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<size_t>(st.st_size);
  if (file.size_ > 0) {
    void* p = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return FileError(err, "mmap", path);
    }
    file.data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      path_(std::move(other.path_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    path_ = std::move(other.path_);
  }
  return *this;
}

MappedFile::~MappedFile() { Reset(); }

void MappedFile::Reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace loom
