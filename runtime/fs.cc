#include "runtime/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "runtime/files.h"

namespace loom {

namespace {

std::atomic<PosixWriteFunction> g_write{nullptr};

ssize_t DoWrite(int fd, const void* data, size_t bytes) {
  PosixWriteFunction f = g_write.load();
  return f != nullptr ? f(fd, data, bytes) : ::write(fd, data, bytes);
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd, int64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Append(std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("append to closed ", path_));
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = DoWrite(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : ENOSPC;
        size_ += static_cast<int64_t>(done);
        return FileError(err, absl::StrCat("append ", data.size(), " bytes to"), path_);
      }
      done += static_cast<size_t>(n);
    }
    size_ += static_cast<int64_t>(data.size());
    return absl::OkStatus();
  }
  absl::Status Truncate(int64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return FileError(errno, "truncate", path_);
    }
    if (::lseek(fd_, static_cast<off_t>(size), SEEK_SET) < 0) {
      return FileError(errno, "seek in", path_);
    }
    size_ = size;
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    while (::fsync(fd_) != 0) {
      if (errno != EINTR) return FileError(errno, "fsync", path_);
    }
    return absl::OkStatus();
  }
  absl::Status Close() override {
    if (fd_ < 0) return absl::OkStatus();
    const int fd = fd_;
    fd_ = -1;
    // On NFS a failed close can be the first sign of a lost write.
    if (::close(fd) != 0) return FileError(errno, "close", path_);
    return absl::OkStatus();
  }
  int64_t Size() const override { return size_; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  int fd_;
  int64_t size_;
};

class PosixFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                             OpenMode mode) override {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
    if (mode == OpenMode::kTruncate) flags |= O_TRUNC;
    if (mode == OpenMode::kCreateNew) flags |= O_EXCL;
    const int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) {
      if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat(path, " already exists"));
      return FileError(errno, "open for writing", path);
    }
    const off_t end = ::lseek(fd, 0, SEEK_END);
    if (end < 0) {
      const int err = errno;
      ::close(fd);
      return FileError(err, "seek to the end of", path);
    }
    return std::unique_ptr<WritableFile>(
        new PosixWritableFile(path, fd, static_cast<int64_t>(end)));
  }

  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return FileError(errno, "open", path);
    // Read straight into the result; one byte beyond the expected size shows EOF without a
    // second allocation. Files that grow (or report no size, like /proc) grow the buffer.
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

  absl::Status CreateDir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0755) == 0) return absl::OkStatus();
    if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat(path, " already exists"));
    return FileError(errno, "mkdir", path);
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return FileError(errno, absl::StrCat("rename '", from, "' to"), to);
    }
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return FileError(errno, "open directory", path);
    absl::Status st;
    while (::fsync(fd) != 0) {
      if (errno != EINTR) {
        st = FileError(errno, "fsync", path);
        break;
      }
    }
    ::close(fd);
    return st;
  }

  absl::Status Remove(const std::string& path) override {
    if (::remove(path.c_str()) != 0) return FileError(errno, "remove", path);
    return absl::OkStatus();
  }

  absl::Status RemoveAll(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return FileError(ec.value(), "remove", path);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return FileError(errno, "list directory", path);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }

  absl::StatusOr<FileInfo> Stat(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return FileError(errno, "stat", path);
    FileInfo info;
    info.is_dir = S_ISDIR(st.st_mode);
    info.is_regular = S_ISREG(st.st_mode);
    info.size = static_cast<int64_t>(st.st_size);
    return info;
  }
};

std::atomic<FileSystem*> g_fs{nullptr};

}  // namespace

FileSystem& PosixFs() {
  static PosixFileSystem* fs = new PosixFileSystem();
  return *fs;
}

FileSystem& Fs() {
  FileSystem* fs = g_fs.load();
  return fs != nullptr ? *fs : PosixFs();
}

ScopedFileSystemForTesting::ScopedFileSystemForTesting(FileSystem* fs)
    : previous_(g_fs.exchange(fs)) {}
ScopedFileSystemForTesting::~ScopedFileSystemForTesting() { g_fs.store(previous_); }

void SetPosixWriteFunctionForTesting(PosixWriteFunction write_function) {
  g_write.store(write_function);
}

std::string ParentDirOf(const std::string& path) {
  size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;  // ignore trailing slashes
  size_t slash = path.rfind('/', end - 1);
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status AtomicWriteFile(FileSystem& fs, const std::string& path, std::string_view bytes) {
  // Unique per process and call, so concurrent writers never share a temporary file.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp-", ::getpid(), "-", counter.fetch_add(1));
  auto file = fs.OpenWritable(tmp, FileSystem::OpenMode::kCreateNew);
  if (!file.ok()) {
    return absl::Status(file.status().code(), absl::StrCat("create temporary file for '", path,
                                                           "': ", file.status().message()));
  }
  absl::Status st = (*file)->Append(bytes);
  if (st.ok()) st = (*file)->Sync();
  absl::Status close_st = (*file)->Close();
  if (st.ok()) st = close_st;
  if (st.ok()) st = fs.Rename(tmp, path);
  if (!st.ok()) {
    (void)fs.Remove(tmp);
    return st;
  }
  return fs.SyncDir(ParentDirOf(path));
}

absl::Status DurableRename(FileSystem& fs, const std::string& from, const std::string& to) {
  if (absl::Status st = fs.Rename(from, to); !st.ok()) return st;
  const std::string to_dir = ParentDirOf(to), from_dir = ParentDirOf(from);
  absl::Status st = fs.SyncDir(to_dir);
  if (st.ok() && from_dir != to_dir) st = fs.SyncDir(from_dir);
  return st;
}

absl::Status MakeDirs(FileSystem& fs, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("MakeDirs: empty path");
  // Each prefix ending before a '/', then the whole path. Existing directories are looked at
  // before anything is created, so a read-only or unwritable parent is fine.
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    if (path[pos - 1] == '/') continue;  // "a//b" or trailing slash: prefix already handled
    const std::string prefix = path.substr(0, pos);
    auto info = fs.Stat(prefix);
    if (info.ok()) {
      if (info->is_dir) continue;
      return absl::FailedPreconditionError(
          absl::StrCat("MakeDirs '", path, "': '", prefix, "' exists and is not a directory"));
    }
    if (info.status().code() != absl::StatusCode::kNotFound) return info.status();
    absl::Status made = fs.CreateDir(prefix);
    if (made.ok()) continue;
    // Another process may have created it meanwhile.
    if (absl::IsAlreadyExists(made) && IsDir(fs, prefix)) continue;
    return made;
  }
  return absl::OkStatus();
}

std::string UnwritableDirProblem(const std::string& path) {
  if (path.empty()) return "the path is empty";
  std::string p = path;
  while (true) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return p == path
                   ? absl::StrCat("'", path, "' exists and is not a directory")
                   : absl::StrCat("'", path, "' lies under '", p, "', which is not a directory");
      }
      if (::access(p.c_str(), W_OK | X_OK) != 0) {
        const int err = errno;
        return p == path ? absl::StrCat("'", path, "' is not writable: ", std::strerror(err))
                         : absl::StrCat("'", path, "' cannot be created in '", p,
                                        "': ", std::strerror(err));
      }
      return "";
    }
    if (errno != ENOENT && errno != ENOTDIR) {
      return absl::StrCat("'", p, "': ", std::strerror(errno));
    }
    const std::string parent = ParentDirOf(p);
    if (parent == p) return absl::StrCat("'", path, "': no existing parent directory");
    p = parent;
  }
}

bool Exists(FileSystem& fs, const std::string& path) { return fs.Stat(path).ok(); }

bool IsDir(FileSystem& fs, const std::string& path) {
  auto info = fs.Stat(path);
  return info.ok() && info->is_dir;
}

}  // namespace loom
