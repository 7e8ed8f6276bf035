// TensorBoard event files, written without TensorFlow.
//
// A file is a sequence of TFRecords, each
//   uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// (little-endian) whose data is a serialized tb::Event. The first record carries file_version
// "brain.Event:2"; each later one holds the scalars of one step. Every record goes to the OS
// whole or not at all as soon as it is written (metrics/append_file.h), so a running TensorBoard
// sees each step, and neither a crash nor a full disk leaves a torn record. The reader below checks
// both CRCs of every record; tests use it, and so can anyone who wants the numbers back without
// Python.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "metrics/append_file.h"
#include "proto/tensorboard.pb.h"

namespace loom {

inline constexpr char kTensorBoardFileVersion[] = "brain.Event:2";

// One TFRecord around `data`.
std::string TfRecordFrame(std::string_view data);
// The records of a TFRecord file, after checking lengths and CRCs; errors name the path and the
// byte offset of the bad record.
absl::StatusOr<std::vector<std::string>> ReadTfRecords(const std::string& path);
// ReadTfRecords, each record parsed as a tb::Event.
absl::StatusOr<std::vector<tb::Event>> ReadEventFile(const std::string& path);

class TensorBoardWriter {
 public:
  // Creates <run_dir>/events.out.tfevents.<unix seconds>.<hostname> (with ".<n>" appended when
  // that name is taken, e.g. by a resume within the same second) and writes the file_version
  // record. TensorBoard reads every events file of a directory, so a resumed run simply adds one.
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Create(const std::string& run_dir);
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One Event holding these (tag, value) scalars at `step`, stamped with the current time, and
  // flushed.
  absl::Status WriteScalars(int64_t step, absl::Span<const std::pair<std::string, float>> scalars);
  // As above with an explicit wall time (seconds since the epoch).
  absl::Status WriteScalars(int64_t step, absl::Span<const std::pair<std::string, float>> scalars,
                            double wall_time);

  const std::string& path() const { return file_->path(); }

 private:
  explicit TensorBoardWriter(std::unique_ptr<AppendFile> file) : file_(std::move(file)) {}
  absl::Status WriteEvent(const tb::Event& event);

  std::unique_ptr<AppendFile> file_;
};

}  // namespace loom
