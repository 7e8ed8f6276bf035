// AppendFile: a file that grows by whole records. Append() hands the record to the kernel with
// write(2) (no stdio buffer, so a crash after it returns loses nothing the OS has), and when a
// write fails part way (a full disk, a quota) it truncates the file back to where the record
// began: a reader never sees half a record. The metrics sinks (metrics.jsonl, TensorBoard event
// files) are built on it.
//
// Files are opened through the file-system seam (runtime/fs.h), where tests inject faults;
// SetAppendWriteFunctionForTesting replaces only the kernel's write under it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/fs.h"

namespace loom {

class AppendFile {
 public:
  enum class Mode {
    kTruncate,   // create, or empty an existing file
    kAppend,     // create, or continue an existing file
    kCreateNew,  // create; AlreadyExists when the path exists
  };
  static absl::StatusOr<std::unique_ptr<AppendFile>> Open(const std::string& path, Mode mode);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Writes all of `record` or, on failure, nothing (the file is cut back to its previous size);
  // the error names the path and the OS's reason.
  absl::Status Append(std::string_view record);

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }

 private:
  AppendFile(std::string path, std::unique_ptr<WritableFile> file)
      : path_(std::move(path)), file_(std::move(file)), size_(file_->Size()) {}
  std::string path_;
  std::unique_ptr<WritableFile> file_;
  int64_t size_;  // bytes of whole records in the file
};

// Replaces write(2) for every AppendFile; nullptr restores it. For tests only.
using AppendWriteFunction = ssize_t (*)(int fd, const void* data, size_t bytes);
void SetAppendWriteFunctionForTesting(AppendWriteFunction write_function);

}  // namespace loom
