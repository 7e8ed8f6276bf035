// Files: the few filesystem operations checkpoints, data shards and logs need, with the
// durability and error messages they need. AtomicWriteFile, ReadFile, MakeDirs, FsyncDir and
// DurableRename go through the file-system seam (runtime/fs.h: Fs()), where tests inject faults.
//
// - AtomicWriteFile leaves either the old contents or the new, never a torn file: it writes a
//   temporary file beside the target, fsyncs it, renames it over the target and fsyncs the
//   directory so the rename itself survives a crash.
// - MappedFile maps a file read-only for zero-copy access to token shards and checkpoints.
// - Every error names the operation, the path and the errno text, and maps errno to a status
//   code (ENOENT -> NotFound, EACCES -> PermissionDenied, ENOSPC -> ResourceExhausted, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loom {

// Replaces `path` with `bytes` atomically and durably (see above). The parent directory must
// exist. On failure the temporary file is removed and the old contents stay.
absl::Status AtomicWriteFile(const std::string& path, std::string_view bytes);

// The whole contents of a regular file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Creates `path` and any missing parents (mode 0755), like `mkdir -p`. Succeeds when the
// directory already exists, also when another process creates it concurrently; fails when
// the path or a parent exists and is not a directory.
absl::Status MakeDirs(const std::string& path);

// fsync on a directory: makes entries created, renamed or removed in it durable.
absl::Status FsyncDir(const std::string& path);

// Renames `from` to `to` (a file or a directory; `to` is replaced if it is a file or an empty
// directory) and fsyncs the parent directory of `to`, and of `from` when it differs.
absl::Status DurableRename(const std::string& from, const std::string& to);

// A read-only memory map of a whole file. Move-only; unmaps on destruction. An empty file maps
// to data() == nullptr, size() == 0.
class MappedFile {
 public:
  static absl::StatusOr<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view view() const {
    return std::string_view(reinterpret_cast<const char*>(data_), size_);
  }
  const std::string& path() const { return path_; }

 private:
  void Reset();

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// "<what> '<path>': <strerror(err)>" with the status code errno maps to. Exposed for other
// code that makes its own system calls on files.
absl::Status FileError(int err, std::string_view what, const std::string& path);

}  // namespace loom
