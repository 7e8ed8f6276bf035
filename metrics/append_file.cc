#include "metrics/append_file.h"

#include "absl/strings/str_cat.h"

namespace loom {

void SetAppendWriteFunctionForTesting(AppendWriteFunction write_function) {
  SetPosixWriteFunctionForTesting(write_function);
}

absl::StatusOr<std::unique_ptr<AppendFile>> AppendFile::Open(const std::string& path, Mode mode) {
  const FileSystem::OpenMode m = mode == Mode::kTruncate ? FileSystem::OpenMode::kTruncate
                                 : mode == Mode::kAppend ? FileSystem::OpenMode::kAppend
                                                         : FileSystem::OpenMode::kCreateNew;
  auto file = Fs().OpenWritable(path, m);
  if (!file.ok()) {
    if (absl::IsAlreadyExists(file.status())) return file.status();
    return absl::Status(file.status().code(),
                        absl::StrCat("open for appending: ", file.status().message()));
  }
  return std::unique_ptr<AppendFile>(new AppendFile(path, std::move(*file)));
}

AppendFile::~AppendFile() = default;

absl::Status AppendFile::Append(std::string_view record) {
  absl::Status st = file_->Append(record);
  if (!st.ok()) {
    // Undo the part that made it, so the file ends with a whole record. (Shrinking a file
    // needs no free space, so this works on a full disk.)
    if (file_->Size() != size_) (void)file_->Truncate(size_);
    return st;
  }
  size_ += static_cast<int64_t>(record.size());
  return absl::OkStatus();
}

}  // namespace loom
