// Finding checkpoints (latest, the newest complete step) and reading them (CheckpointReader):
// the manifest checked as untrusted input, boxes read from any layout. See checkpoint.h.
#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_files.h"
#include "runtime/crc32c.h"
#include "runtime/dtype.h"
#include "runtime/fs.h"
#include "runtime/logging.h"
#include "runtime/status.h"

namespace loom {

using checkpoint_internal::HasManifest;
using checkpoint_internal::kLatest;
using checkpoint_internal::kManifest;
using checkpoint_internal::StepOfDirName;

// ---------------------------------------------------------------------------------------------
// Finding.

absl::StatusOr<NewestCheckpoint> FindNewestCompleteCheckpoint(const std::string& dir) {
  NewestCheckpoint found;
  FileSystem& fs = Fs();
  if (!IsDir(fs, dir)) return found;
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListDir(dir));
  std::vector<std::pair<int64_t, std::string>> steps;
  for (const std::string& name : names) {
    const int64_t step = StepOfDirName(name);
    if (step >= 0 && IsDir(fs, absl::StrCat(dir, "/", name))) steps.push_back({step, name});
  }
  std::sort(steps.rbegin(), steps.rend());
  for (const auto& [step, name] : steps) {
    const std::string path = absl::StrCat(dir, "/", name);
    // Open checks the manifest and every data file it names (plain names, real sizes).
    auto reader = CheckpointReader::Open(path);
    if (reader.ok()) {
      found.path = path;
      return found;
    }
    found.skipped.push_back(absl::StrCat(name, " (", reader.status().message(), ")"));
  }
  return found;
}

absl::StatusOr<std::optional<std::string>> LatestCheckpoint(const std::string& dir) {
  const std::string latest = absl::StrCat(dir, "/", kLatest);
  FileSystem& fs = Fs();
  if (!Exists(fs, latest)) {
    // `latest` lost (a failed copy, a cleanup script): the newest complete step directory, as
    // Orbax does, rather than a fresh start over the run's checkpoints.
    LOOM_ASSIGN_OR_RETURN(NewestCheckpoint newest, FindNewestCompleteCheckpoint(dir));
    if (newest.path.empty()) {
      if (!newest.skipped.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            dir, " has no '", kLatest,
            "' file and no complete checkpoint: ", absl::StrJoin(newest.skipped, "; ")));
      }
      return std::optional<std::string>();
    }
    LOOM_LOG(WARNING) << dir << " has no '" << kLatest << "' file: using the newest complete "
                      << "checkpoint, " << newest.path << " (its manifest and data files check)"
                      << (newest.skipped.empty()
                              ? std::string()
                              : absl::StrCat("; skipped: ", absl::StrJoin(newest.skipped, "; ")));
    return std::optional<std::string>(newest.path);
  }
  LOOM_ASSIGN_OR_RETURN(std::string name, fs.ReadFile(latest));
  name = std::string(absl::StripAsciiWhitespace(name));
  const std::string target = absl::StrCat(dir, "/", name);
  if (StepOfDirName(name) < 0 || !HasManifest(target)) {
    return absl::FailedPreconditionError(absl::StrCat(latest, " names '", name,
                                                      "', which is not a complete checkpoint (no ",
                                                      target, "/", kManifest, ")"));
  }
  return std::optional<std::string>(target);
}

absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path) {
  FileSystem& fs = Fs();
  if (!Exists(fs, path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint path '", path, "' does not exist"));
  }
  if (HasManifest(path)) return path;
  LOOM_ASSIGN_OR_RETURN(std::optional<std::string> latest, LatestCheckpoint(path));
  if (latest) return *latest;
  std::vector<std::string> incomplete;
  if (IsDir(fs, path)) {
    auto names = fs.ListDir(path);
    if (names.ok()) {
      for (const std::string& name : *names) {
        if (name.rfind("step_", 0) == 0) incomplete.push_back(name);
      }
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("'", path, "' holds no complete checkpoint: no ", kManifest, " in it and no '",
                   kLatest, "' file",
                   incomplete.empty() ? std::string()
                                      : absl::StrCat(" (step directories without a manifest: ",
                                                     absl::StrJoin(incomplete, ", "), ")")));
}

// ---------------------------------------------------------------------------------------------
// Loading.

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(
    const std::string& step_dir) {
  auto r = std::unique_ptr<CheckpointReader>(new CheckpointReader());
  r->dir_ = step_dir;
  const std::string path = absl::StrCat(step_dir, "/", kManifest);
  auto bytes = ReadFile(path);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("checkpoint manifest: ", bytes.status().message()));
  }
  if (!r->manifest_.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat(path, ": not a checkpoint manifest (corrupt?)"));
  }
  if (r->manifest_.format_version() != kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": checkpoint format version ", r->manifest_.format_version(),
                     ", this build reads version ", kCheckpointFormatVersion));
  }
  LOOM_RETURN_IF_ERROR(r->CheckManifest());
  r->verified_.assign(r->manifest_.slices_size(), false);
  return r;
}

namespace {

// A data file's name in a manifest: a plain name inside the step directory, nothing else.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= 255 &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

// a * b, or nullopt past int64.
std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

}  // namespace

absl::Status CheckpointReader::CheckManifest() {
  const std::string path = absl::StrCat(dir_, "/", kManifest);
  // Data files: plain names inside the step directory, each listed once, present with the
  // recorded size. Every size below is bounded by these real sizes, so nothing a manifest
  // claims makes a reader allocate more than the checkpoint holds.
  FileSystem& fs = Fs();
  int64_t total_bytes = 0;
  for (const CheckpointFile& f : manifest_.files()) {
    if (!IsPlainFileName(f.name())) {
      return absl::DataLossError(
          absl::StrCat(path, ": data file name '", absl::CEscape(f.name()),
                       "' is not a plain file name inside the checkpoint directory (refused)"));
    }
    if (file_sizes_.count(f.name())) {
      return absl::DataLossError(absl::StrCat(path, ": data file ", f.name(), " listed twice"));
    }
    const std::string file = absl::StrCat(dir_, "/", f.name());
    auto info = fs.Stat(file);
    if (!info.ok()) {
      return absl::Status(info.status().code(),
                          absl::StrCat("checkpoint data file: ", info.status().message()));
    }
    if (!info->is_regular) {
      return absl::DataLossError(absl::StrCat(file, " is not a regular file"));
    }
    if (info->size != f.size()) {
      return absl::DataLossError(absl::StrCat(file, " has ", info->size,
                                              " bytes, the manifest records ", f.size(),
                                              " (truncated or overwritten)"));
    }
    file_sizes_[f.name()] = info->size;
    total_bytes += info->size;
  }
  for (const CheckpointTensor& t : manifest_.tensors()) {
    if (tensors_.count(t.name())) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", t.name(), " listed twice"));
    }
    std::optional<int64_t> numel = 1;
    bool ok = t.global_shape_size() >= 1 && t.global_shape_size() <= 2;
    for (int64_t d : t.global_shape()) {
      ok = ok && d >= 1;
      if (ok && numel) numel = CheckedMul(*numel, d);
    }
    // Every saved tensor is covered by its slices, of 2 bytes per element at least (bf16).
    if (!ok || !numel || *numel > total_bytes / 2) {
      return absl::DataLossError(absl::StrCat(
          path, ": tensor ", t.name(), " has global shape [", absl::StrJoin(t.global_shape(), ", "),
          "], more than the ", total_bytes, " bytes of data files could hold (corrupt manifest)"));
    }
    if (t.zero_rows_from() > t.global_shape(0)) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", t.name(), " has zero_rows_from ",
                                              t.zero_rows_from(), " beyond its ", t.global_shape(0),
                                              " rows"));
    }
    tensors_[t.name()] = &t;
  }
  for (int i = 0; i < manifest_.slices_size(); ++i) {
    const CheckpointSlice& s = manifest_.slices(i);
    auto t = tensors_.find(s.tensor());
    auto size = file_sizes_.find(s.file());
    const std::string what = absl::StrCat(path, ": slice ", i, " of ", s.tensor());
    if (t == tensors_.end()) {
      return absl::DataLossError(absl::StrCat(what, " names an unknown tensor"));
    }
    if (size == file_sizes_.end()) {
      return absl::DataLossError(absl::StrCat(
          what, " names data file '", absl::CEscape(s.file()),
          "', which is not in the manifest's file table (refused: a slice reads only the "
          "checkpoint's own files)"));
    }
    const auto& shape = t->second->global_shape();
    bool ok = s.offset_size() == shape.size() && s.extent_size() == shape.size();
    int64_t numel = 1;
    for (int d = 0; ok && d < shape.size(); ++d) {
      ok = s.offset(d) >= 0 && s.extent(d) >= 0 && s.offset(d) <= shape[d] &&
           s.extent(d) <= shape[d] - s.offset(d);
      numel *= ok ? s.extent(d) : 1;  // bounded by the tensor's numel: no overflow
    }
    if (!ok) {
      return absl::DataLossError(absl::StrCat(what,
                                              ": its box lies outside the tensor's global shape [",
                                              absl::StrJoin(shape, ", "), "] (malformed)"));
    }
    auto dtype = ParseDType(s.dtype());
    if (!dtype.ok() || (*dtype != DType::kF32 && *dtype != DType::kBF16) ||
        s.length() != numel * static_cast<int64_t>(DTypeSize(*dtype))) {
      return absl::DataLossError(absl::StrCat(what, ": dtype '", absl::CEscape(s.dtype()),
                                              "' and length ", s.length(),
                                              " do not match its box"));
    }
    if (s.byte_offset() < 0 || s.byte_offset() > size->second - s.length()) {
      return absl::DataLossError(absl::StrCat(dir_, "/", s.file(), " is truncated: ", what,
                                              " (bytes [", s.byte_offset(), ", +", s.length(),
                                              ")) lies past its end (", size->second, " bytes)"));
    }
    index_[{s.tensor(), static_cast<int>(s.kind())}].push_back(i);
  }
  return absl::OkStatus();
}

bool CheckpointReader::Has(const std::string& tensor, CheckpointKind kind) const {
  return index_.count({tensor, static_cast<int>(kind)}) > 0;
}

absl::Status CheckpointReader::CheckTable(const ParamTable& table) const {
  const std::string where = absl::StrCat(dir_, "/", kManifest);
  for (const ParamSpec& s : table.specs()) {
    auto it = tensors_.find(s.name);
    if (it == tensors_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", where, " has no tensor ", s.name, " (the model has it with shape ",
          s.global_shape.ToString(), "): a checkpoint of another model?"));
    }
    const CheckpointTensor& t = *it->second;
    // The real rows first: padding may hide a different vocabulary (257 and 300 both pad to
    // 384 rows at a multiple of 128), and a model of another vocabulary is another model.
    if (t.zero_rows_from() != s.zero_rows_from) {
      auto rows = [](int64_t z) {
        return z >= 0 ? absl::StrCat(z, " real rows (the rest padding)")
                      : std::string("no padding");
      };
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", where, ": tensor ", s.name, " has ", rows(t.zero_rows_from()),
                       ", the model expects ", rows(s.zero_rows_from),
                       ": a checkpoint of another model (model.vocab)?"));
    }
    const std::vector<int64_t>& want = s.global_shape.dims();
    std::vector<int64_t> got(t.global_shape().begin(), t.global_shape().end());
    bool ok = got.size() == want.size();
    for (size_t d = 0; ok && d < want.size(); ++d) {
      if (got[d] == want[d]) continue;
      // A padded vocabulary may be padded differently (it depends on tp): only the padding.
      ok = d == 0 && s.zero_rows_from >= 0 && got[0] >= s.zero_rows_from &&
           want[0] >= s.zero_rows_from;
    }
    if (!ok) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", where, ": tensor ", s.name, " has shape [", absl::StrJoin(got, ", "),
          "] (", t.zero_rows_from() >= 0 ? absl::StrCat(t.zero_rows_from(), " real rows") : "",
          "), the model expects ", s.global_shape.ToString(),
          ": a checkpoint of another model (layers, hidden, vocab)?"));
    }
  }
  for (const ParamSpec& s : table.specs()) {
    if (!Has(s.name, WEIGHTS) && !Has(s.name, MASTER)) {
      return absl::DataLossError(absl::StrCat("checkpoint ", where, " lists tensor ", s.name,
                                              " but saves no slice of it"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const MappedFile*> CheckpointReader::File(const std::string& name) {
  auto it = files_.find(name);
  if (it != files_.end()) return &it->second;
  if (!file_sizes_.count(name)) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir_, ": data file '",
                                            absl::CEscape(name),
                                            "' is not in the manifest's file table (refused)"));
  }
  const std::string path = absl::StrCat(dir_, "/", name);
  auto f = MappedFile::Open(path);
  if (!f.ok()) {
    return absl::Status(f.status().code(),
                        absl::StrCat("checkpoint data file: ", f.status().message()));
  }
  for (const CheckpointFile& cf : manifest_.files()) {
    if (cf.name() == name && static_cast<int64_t>(f->size()) != cf.size()) {
      return absl::DataLossError(absl::StrCat(path, " has ", f->size(),
                                              " bytes, the manifest records ", cf.size(),
                                              " (truncated or overwritten)"));
    }
  }
  return &files_.emplace(name, std::move(*f)).first->second;
}

absl::StatusOr<const uint8_t*> CheckpointReader::SliceData(int index) {
  const CheckpointSlice& s = manifest_.slices(index);
  LOOM_ASSIGN_OR_RETURN(const MappedFile* f, File(s.file()));
  const std::string path = absl::StrCat(dir_, "/", s.file());
  TensorBox box{{s.offset().begin(), s.offset().end()}, {s.extent().begin(), s.extent().end()}};
  const std::string what =
      absl::StrCat("slice of ", s.tensor(), " (", KindName(s.kind()), " ", BoxString(box),
                   ", bytes [", s.byte_offset(), ", ", s.byte_offset() + s.length(), "))");
  auto dtype = ParseDType(s.dtype());
  if (!dtype.ok() || (*dtype != DType::kF32 && *dtype != DType::kBF16) ||
      s.length() != box.numel() * static_cast<int64_t>(DTypeSize(*dtype))) {
    return absl::DataLossError(absl::StrCat(path, ": the manifest's ", what, " has dtype '",
                                            s.dtype(), "' and a length that do not match"));
  }
  if (s.byte_offset() < 0 || s.byte_offset() + s.length() > static_cast<int64_t>(f->size())) {
    return absl::DataLossError(absl::StrCat(path, " is truncated: the ", what,
                                            " lies past its end (", f->size(), " bytes)"));
  }
  const uint8_t* data = f->data() + s.byte_offset();
  if (!verified_[index]) {
    const uint32_t crc = Crc32c(data, static_cast<size_t>(s.length()));
    if (crc != s.crc32c()) {
      return absl::DataLossError(absl::StrFormat(
          "%s: checksum mismatch in the %s: CRC-32C %08x, the manifest records %08x (corrupt)",
          path, what, crc, s.crc32c()));
    }
    verified_[index] = true;
  }
  return data;
}

absl::Status CheckpointReader::ReadBox(const std::string& tensor, CheckpointKind kind,
                                       const TensorBox& box, float* dst) {
  auto it = index_.find({tensor, static_cast<int>(kind)});
  auto t = tensors_.find(tensor);
  if (it == index_.end() || t == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", dir_, " saves no ", KindName(kind), " of tensor ", tensor));
  }
  const int rank = static_cast<int>(box.offset.size());
  if (rank < 1 || rank > 2 || t->second->global_shape_size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: box ", BoxString(box), " of ",
                                                   tensor, " does not match its saved rank"));
  }
  std::fill(dst, dst + box.numel(), 0.0f);
  TensorBox whole;
  for (int64_t d : t->second->global_shape()) {
    whole.offset.push_back(0);
    whole.extent.push_back(d);
  }
  const int64_t need = Intersect(box, whole).numel();
  int64_t covered = 0;
  const int64_t box_cols = rank == 2 ? box.extent[1] : box.extent[0];
  for (int index : it->second) {
    const CheckpointSlice& s = manifest_.slices(index);
    if (s.offset_size() != rank) continue;
    TensorBox sb{{s.offset().begin(), s.offset().end()}, {s.extent().begin(), s.extent().end()}};
    const TensorBox in = Intersect(sb, box);
    if (in.numel() == 0) continue;
    LOOM_ASSIGN_OR_RETURN(const uint8_t* data, SliceData(index));
    const bool bf16 = s.dtype() == "bf16";
    const int64_t rows = rank == 2 ? in.extent[0] : 1,
                  cols = rank == 2 ? in.extent[1] : in.extent[0];
    const int64_t slice_cols = rank == 2 ? sb.extent[1] : sb.extent[0];
    for (int64_t r = 0; r < rows; ++r) {
      int64_t src = 0, out = 0;
      if (rank == 2) {
        src = (in.offset[0] + r - sb.offset[0]) * slice_cols + (in.offset[1] - sb.offset[1]);
        out = (in.offset[0] + r - box.offset[0]) * box_cols + (in.offset[1] - box.offset[1]);
      } else {
        src = in.offset[0] - sb.offset[0];
        out = in.offset[0] - box.offset[0];
      }
      if (bf16) {
        const uint8_t* p = data + src * 2;
        for (int64_t c = 0; c < cols; ++c) {
          uint16_t bits;
          std::memcpy(&bits, p + 2 * c, 2);
          dst[out + c] = Bf16BitsToFloat(bits);
        }
      } else {
        std::memcpy(dst + out, data + src * 4, static_cast<size_t>(cols) * 4);
      }
    }
    covered += in.numel();
  }
  if (covered != need) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", dir_, ": the saved ", KindName(kind), " slices of ", tensor,
                     " cover ", covered, " of the ", need, " elements of box ", BoxString(box),
                     covered > need ? " (overlapping slices)" : " (slices missing)"));
  }
  return absl::OkStatus();
}

absl::Status CheckpointReader::Load(const ParamTable& table, const OptimizerView& optimizer,
                                    bool with_optimizer, float* weights, float* master, float* m,
                                    float* v) {
  LOOM_RETURN_IF_ERROR(CheckTable(table));
  LOOM_ASSIGN_OR_RETURN(std::vector<Region> regions,
                        NeededRegions(table, optimizer, with_optimizer));
  for (const Region& r : regions) {
    CheckpointKind from = r.kind;
    float* dst = nullptr;
    switch (r.kind) {
      case WEIGHTS:
        dst = weights;
        // The fp32 master weights are the exact values where the weights were rounded to bf16.
        if (Has(r.spec->name, MASTER)) from = MASTER;
        break;
      case MASTER:
        dst = master;
        if (!Has(r.spec->name, MASTER)) from = WEIGHTS;  // saved from an f32 model
        break;
      case ADAM_M:
        dst = m;
        break;
      case ADAM_V:
        dst = v;
        break;
      default:
        break;
    }
    if (dst == nullptr) return absl::InternalError("checkpoint Load: no buffer for a region");
    LOOM_RETURN_IF_ERROR(ReadBox(r.spec->name, from, r.box, dst + r.at));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CheckpointReader::VerifyAll() {
  int64_t bytes = 0;
  for (const CheckpointFile& f : manifest_.files()) LOOM_RETURN_IF_ERROR(File(f.name()).status());
  for (int i = 0; i < manifest_.slices_size(); ++i) {
    verified_[i] = false;
    LOOM_RETURN_IF_ERROR(SliceData(i).status());
    bytes += manifest_.slices(i).length();
  }
  return bytes;
}

}  // namespace loom
