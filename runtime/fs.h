// FileSystem: the one seam between loom's durable state (checkpoints, metrics, run and
// checkpoint directories, their locks) and the kernel, as leveldb's Env is. Code that writes
// state a run depends on goes through Fs() instead of calling open/write/rename itself, so a
// test can put a FaultInjectionFileSystem (runtime/fault_fs.h) underneath and fail any single
// operation (ENOSPC, EIO, a short write, a failed fsync or rename) or "crash" after any one.
//
// Promises of the posix implementation (Fs() by default):
// - Every error names the operation, the path and the errno text, with the status code errno
//   maps to (ENOENT -> NotFound, ENOSPC -> ResourceExhausted, ...) - see FileError.
// - WritableFile::Append writes all of the bytes or returns an error; on an error some prefix
//   may have reached the file (the caller decides whether to Truncate it away).
// - Nothing is durable until Sync (file data) and SyncDir (names in a directory).
//
// The helpers below (AtomicWriteFile, DurableRename, MakeDirs, ...) are built only on the
// interface, so they behave the same over any implementation.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loom {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(std::string_view data) = 0;
  // Cuts the file to `size` bytes and continues writing there.
  virtual absl::Status Truncate(int64_t size) = 0;
  virtual absl::Status Sync() = 0;
  // Closes the file (also done, errors ignored, by the destructor).
  virtual absl::Status Close() = 0;
  // Bytes in the file: its size when opened plus what was appended since (minus truncation).
  virtual int64_t Size() const = 0;
  virtual const std::string& path() const = 0;
};

struct FileInfo {
  bool is_dir = false;
  bool is_regular = false;
  int64_t size = 0;
};

class FileSystem {
 public:
  enum class OpenMode {
    kTruncate,   // create, or empty an existing file
    kAppend,     // create, or continue an existing file
    kCreateNew,  // create; AlreadyExists when the path exists
  };
  virtual ~FileSystem() = default;

  virtual absl::StatusOr<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                                     OpenMode mode) = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // One directory (its parent must exist); AlreadyExists when the path exists.
  virtual absl::Status CreateDir(const std::string& path) = 0;
  // rename(2): `to` is replaced if it is a file or an empty directory.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  virtual absl::Status SyncDir(const std::string& path) = 0;
  // A file or an empty directory; NotFound when absent.
  virtual absl::Status Remove(const std::string& path) = 0;
  // A file or a directory with everything in it; OK when absent.
  virtual absl::Status RemoveAll(const std::string& path) = 0;
  // Entry names (no "." or ".."), sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // NotFound when the path does not exist.
  virtual absl::StatusOr<FileInfo> Stat(const std::string& path) = 0;
};

// The process's file system: the posix one unless a test replaced it.
FileSystem& Fs();
FileSystem& PosixFs();

// Replaces Fs() for its lifetime (tests); restores the previous one on destruction.
class ScopedFileSystemForTesting {
 public:
  explicit ScopedFileSystemForTesting(FileSystem* fs);
  ~ScopedFileSystemForTesting();
  ScopedFileSystemForTesting(const ScopedFileSystemForTesting&) = delete;
  ScopedFileSystemForTesting& operator=(const ScopedFileSystemForTesting&) = delete;

 private:
  FileSystem* previous_;
};

// Replaces write(2) under the posix WritableFile (nullptr restores it). For tests only; the
// metrics tests use it through SetAppendWriteFunctionForTesting.
using PosixWriteFunction = ssize_t (*)(int fd, const void* data, size_t bytes);
void SetPosixWriteFunctionForTesting(PosixWriteFunction write_function);

// --- Helpers over a FileSystem -------------------------------------------------------------

// The directory holding `path` ("." for a bare name, "/" for entries of the root).
std::string ParentDirOf(const std::string& path);

// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path` and syncs
// the directory: the old contents or the new, never a torn file. On failure the temporary
// file is removed (when the file system still lets it) and the old contents stay.
absl::Status AtomicWriteFile(FileSystem& fs, const std::string& path, std::string_view bytes);
// Rename, then sync the parent of `to` (and of `from` when it differs).
absl::Status DurableRename(FileSystem& fs, const std::string& from, const std::string& to);
// `mkdir -p`: fails when the path or a parent exists and is not a directory.
absl::Status MakeDirs(FileSystem& fs, const std::string& path);
bool Exists(FileSystem& fs, const std::string& path);
// Why this process could not create files in directory `path`, or empty: the path, or the
// nearest existing ancestor it would be created under, must be a directory that access(2)
// says is writable (which also catches a read-only file system). A check before a job starts,
// made on the real file system (not through Fs()).
std::string UnwritableDirProblem(const std::string& path);
bool IsDir(FileSystem& fs, const std::string& path);

}  // namespace loom
