// Sharded checkpoints: every rank saves the slices of the model state it owns (slices.h) into
// its own file, rank 0 commits the step with a manifest, and any layout loads them back.
//
// On disk (docs/checkpoints.md has the details):
//   <dir>/step_XXXXXXXX/rank_XXXXX.bin   each rank's slices, back to back
//   <dir>/step_XXXXXXXX/manifest.pb      CheckpointManifest (proto/checkpoint.proto), binary
//   <dir>/step_XXXXXXXX/manifest.txt     the same as text, for humans
//   <dir>/latest                         "step_XXXXXXXX\n", moved by rename
//
// Commit protocol (CheckpointSaver): rank 0 removes stale step_*.tmp directories and creates
// step_XXXXXXXX.tmp/; every rank writes and fsyncs its data file and a small list of its slices
// there; the ranks agree on success (a max over the world of their failure flags); rank 0
// merges the lists into the manifest, writes it (fsynced), renames the directory to its final
// name, then replaces `latest` by rename and prunes to checkpoint.keep_last: it keeps the step
// just saved (the one `latest` names) and the newest steps below it; steps numbered above it
// (left by a run that resumed from an older step) are pruned first. A directory without a manifest
// is never loaded, so a crash at any point leaves the previous checkpoint as the one that loads.
//
// Loading (CheckpointReader): each rank reads, for each box it now holds, the overlapping saved
// slices from whichever files hold them and copies the intersections; every slice's CRC-32C is
// checked when it is first read. Errors name the file and what was expected.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/slices.h"
#include "parallel/communicator.h"
#include "proto/checkpoint.pb.h"
#include "runtime/files.h"
#include "runtime/tensor.h"

namespace loom {

inline constexpr int kCheckpointFormatVersion = 1;

// "step_00000042".
std::string StepDirName(int64_t step);

// What one rank saves from: its table and coordinates, and its buffers (any device). master is
// used only when optimizer.separate_master; m and v are AdamW's packed moments.
struct CheckpointSources {
  const ParamTable* table = nullptr;
  GridCoord coord;
  int dp_size = 1;  // the replicas over which replicated state's writing is spread
  OptimizerView optimizer;
  Tensor params, master, m, v;
};

// The manifest's fields other than tensors, files and slices (same on every rank).
struct CheckpointInfo {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  JobConfig job;
  CheckpointLayout layout;
  CheckpointDataPosition data;
  std::string run_id;
};

struct SaveStats {
  std::string path;           // the committed step directory
  int64_t bytes = 0;          // all ranks
  double seconds = 0;         // from the start of Save to the commit, minus time hidden
  double hidden_seconds = 0;  // async: time the write ran behind training
};

// One per job and checkpoint directory; every method is collective over `world` unless said.
class CheckpointSaver {
 public:
  CheckpointSaver(std::string dir, int keep_last, Communicator* world)
      : dir_(std::move(dir)), keep_last_(keep_last), world_(world) {}
  ~CheckpointSaver();

  // Saves step info.step: copies this rank's slices to host memory, then writes and commits
  // (async false) or leaves the write to a background thread (async true; Finish or Poll
  // commits it). A pending save is finished first. Every rank returns the same verdict.
  absl::StatusOr<std::optional<SaveStats>> Save(const CheckpointSources& sources,
                                                const CheckpointInfo& info, bool async);
  // Waits for a pending background write and commits it; nullopt when none was pending.
  absl::StatusOr<std::optional<SaveStats>> Finish();
  // Commits a pending write when every rank's is done (one small all-reduce while pending);
  // nullopt when nothing was committed.
  absl::StatusOr<std::optional<SaveStats>> Poll();
  bool pending() const { return pending_ != nullptr; }

 private:
  struct Pending {
    CheckpointInfo info;
    std::string tmp_dir, final_dir;
    // This rank's data file: pieces of memory written back to back. They point into `staging`
    // (the regions this rank writes, copied from a device's buffers into the device's host
    // staging memory, page-locked on CUDA, with copies queued on its stream and one wait; freed
    // by the writer once written), into `copy` (host buffers snapshotted for an async save;
    // freed with the save) or, for a synchronous save of host buffers, into the buffers
    // themselves (no copy).
    std::vector<std::pair<const char*, size_t>> chunks;
    int64_t size = 0;
    std::string copy;
    std::unique_ptr<char, std::function<void(char*)>> staging;
    CheckpointRankSlices slices;
    double start_s = 0, write_s = 0;
    absl::Status write_status;
    bool async = false;
    std::atomic<bool> done{false};  // set by the writer
    std::thread writer;
  };
  absl::Status WriteRankFiles(Pending& p);
  absl::StatusOr<SaveStats> Commit();

  std::string dir_;
  int keep_last_ = 0;
  Communicator* world_;
  std::unique_ptr<Pending> pending_;
};

// The step directory `path` names: a step directory with a manifest, or a checkpoint root
// whose `latest` names one. Errors: the path does not exist; nothing complete there (naming
// the step directories without a manifest it found).
absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path);
// The step directory <dir>/latest names. Without a `latest` file: the newest complete step
// directory (one CheckpointReader::Open accepts: manifest, plain file names, real file sizes),
// with a warning saying so; nullopt when there is none at all (a fresh start). An error when
// `latest` names a directory without a manifest, or when step directories exist but none is
// complete (naming each and why).
absl::StatusOr<std::optional<std::string>> LatestCheckpoint(const std::string& dir);

// The newest step directory of `dir` that CheckpointReader::Open accepts ("" when none), and
// each newer one skipped with the reason.
struct NewestCheckpoint {
  std::string path;
  std::vector<std::string> skipped;
};
absl::StatusOr<NewestCheckpoint> FindNewestCompleteCheckpoint(const std::string& dir);

class CheckpointReader {
 public:
  // Reads and checks <step_dir>/manifest.pb: a data file must be a plain name listed in its
  // file table, present with the recorded size; every tensor shape and slice is bounded by
  // those sizes before anything is allocated. Errors name the file and the field.
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> Open(const std::string& step_dir);

  const CheckpointManifest& manifest() const { return manifest_; }
  const std::string& dir() const { return dir_; }
  bool Has(const std::string& tensor, CheckpointKind kind) const;
  // Every parameter of `table` must be saved with a compatible global shape (padded
  // vocabulary rows may differ in number, the real rows may not); errors name the tensor,
  // both shapes (or both real row counts) and the manifest.
  absl::Status CheckTable(const ParamTable& table) const;
  // Fills dst (box.numel() f32 values, row-major) with that box of the saved tensor: the
  // intersections of its slices, zeros in padding rows beyond the saved tensor. Checks each
  // slice's CRC on its first read. Errors name the file, the tensor and the box.
  absl::Status ReadBox(const std::string& tensor, CheckpointKind kind, const TensorBox& box,
                       float* dst);
  // Fills a rank's buffers (host, f32): weights (table.total(); from the fp32 master slices
  // where the checkpoint has them), and when with_optimizer the packed master (if
  // optimizer.separate_master), m and v.
  absl::Status Load(const ParamTable& table, const OptimizerView& optimizer, bool with_optimizer,
                    float* weights, float* master, float* m, float* v);
  // Re-reads every slice of every file and checks every checksum and file size; the number of
  // bytes checked.
  absl::StatusOr<int64_t> VerifyAll();

 private:
  // Open's checks of the manifest against the step directory: plain data file names from the
  // file table only, real file sizes, and every tensor shape, box and length bounded by them.
  absl::Status CheckManifest();
  absl::StatusOr<const MappedFile*> File(const std::string& name);
  absl::StatusOr<const uint8_t*> SliceData(int index);

  std::string dir_;
  CheckpointManifest manifest_;
  std::map<std::pair<std::string, int>, std::vector<int>> index_;  // (tensor, kind) -> slices
  std::map<std::string, const CheckpointTensor*> tensors_;
  std::map<std::string, MappedFile> files_;
  std::map<std::string, int64_t> file_sizes_;  // the file table, checked against the disk
  std::vector<bool> verified_;
};

}  // namespace loom
