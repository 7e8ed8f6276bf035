#include "metrics/tensorboard.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/crc32c.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {

namespace {

void AppendLittleEndian(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t ReadLittleEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

std::string TfRecordFrame(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  AppendLittleEndian(data.size(), 8, &out);
  AppendLittleEndian(MaskedCrc32c(Crc32c(out.data(), 8)), 4, &out);
  out.append(data);
  AppendLittleEndian(MaskedCrc32c(Crc32c(data)), 4, &out);
  return out;
}

absl::StatusOr<std::vector<std::string>> ReadTfRecords(const std::string& path) {
  LOOM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (bytes.size() - pos < 12) {
      return absl::DataLossError(absl::StrCat("TFRecord file ", path, ": record at byte ", pos,
                                              " is cut short in its length header"));
    }
    const uint64_t length = ReadLittleEndian(bytes.data() + pos, 8);
    const uint32_t length_crc = static_cast<uint32_t>(ReadLittleEndian(bytes.data() + pos + 8, 4));
    if (length_crc != MaskedCrc32c(Crc32c(bytes.data() + pos, 8))) {
      return absl::DataLossError(
          absl::StrCat("TFRecord file ", path, ": record at byte ", pos, " has a bad length CRC"));
    }
    if (length > bytes.size() - pos - 12 || bytes.size() - pos - 12 - length < 4) {
      return absl::DataLossError(absl::StrCat("TFRecord file ", path, ": record at byte ", pos,
                                              " says ", length, " bytes but the file ends first"));
    }
    std::string_view data(bytes.data() + pos + 12, length);
    const uint32_t data_crc =
        static_cast<uint32_t>(ReadLittleEndian(bytes.data() + pos + 12 + length, 4));
    if (data_crc != MaskedCrc32c(Crc32c(data))) {
      return absl::DataLossError(
          absl::StrCat("TFRecord file ", path, ": record at byte ", pos, " has a bad data CRC"));
    }
    records.emplace_back(data);
    pos += 16 + length;
  }
  return records;
}

absl::StatusOr<std::vector<tb::Event>> ReadEventFile(const std::string& path) {
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> records, ReadTfRecords(path));
  std::vector<tb::Event> events(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (!events[i].ParseFromString(records[i])) {
      return absl::DataLossError(
          absl::StrCat("event file ", path, ": record ", i, " is not an Event message"));
    }
  }
  return events;
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Create(
    const std::string& run_dir) {
  LOOM_RETURN_IF_ERROR(MakeDirs(run_dir));
  const std::string base =
      (std::filesystem::path(run_dir) /
       absl::StrCat("events.out.tfevents.", absl::ToUnixSeconds(absl::Now()), ".", HostName()))
          .string();
  std::string path = base;
  std::unique_ptr<AppendFile> file;
  for (int n = 1; file == nullptr; ++n) {
    auto opened = AppendFile::Open(path, AppendFile::Mode::kCreateNew);
    if (opened.ok()) {
      file = std::move(*opened);
    } else if (absl::IsAlreadyExists(opened.status()) && n <= 1000) {
      path = absl::StrCat(base, ".", n);
    } else {
      return opened.status();
    }
  }
  auto writer = std::unique_ptr<TensorBoardWriter>(new TensorBoardWriter(std::move(file)));
  tb::Event first;
  first.set_wall_time(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  first.set_file_version(kTensorBoardFileVersion);
  LOOM_RETURN_IF_ERROR(writer->WriteEvent(first));
  return writer;
}

absl::Status TensorBoardWriter::WriteScalars(
    int64_t step, absl::Span<const std::pair<std::string, float>> scalars) {
  return WriteScalars(step, scalars, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
}

absl::Status TensorBoardWriter::WriteScalars(
    int64_t step, absl::Span<const std::pair<std::string, float>> scalars, double wall_time) {
  tb::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tb::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : scalars) {
    tb::Summary::Value* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(value);
  }
  return WriteEvent(event);
}

absl::Status TensorBoardWriter::WriteEvent(const tb::Event& event) {
  return file_->Append(TfRecordFrame(event.SerializeAsString()));
}

}  // namespace loom
