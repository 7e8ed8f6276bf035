// Fuzz target: checkpoints as `loom ckpt verify`, `export` and resume read them (issue 19).
// The first byte of an input says which file the rest replaces in a real one-rank checkpoint
// (step 1 of a two-tensor state): 0 the step's manifest.pb, 1 its data file (the slices'
// bytes), 2 the checkpoint's `latest` pointer. Any bytes either open and verify or are refused
// with a Status - never a crash, a read outside the step directory, or an allocation beyond
// the checkpoint's size.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "runtime/files.h"
#include "tests/checkpoint/checkpoint_testing.h"
#include "tests/fuzz/fuzz_target.h"

namespace {

struct Saved {
  std::string root;                               // the checkpoint dir (holds `latest`)
  std::string step_dir;                           // its step_00000001
  std::string manifest, data_name, data, latest;  // the files as saved
};

// A real checkpoint, saved once per process.
const Saved& Checkpoint() {
  static const Saved saved = [] {
    Saved s;
    s.root = loom::fuzz::ScratchDir() + "/ckpt";
    loom::testing::State state = loom::testing::MakeState(1);
    auto done = loom::testing::SaveStep(s.root, state, 1);
    if (!done.ok()) {
      std::fprintf(stderr, "manifest_fuzz: setup save failed: %s\n",
                   done.status().ToString().c_str());
      std::abort();
    }
    s.step_dir = s.root + "/step_00000001";
    auto manifest = loom::ReadFile(s.step_dir + "/manifest.pb");
    loom::CheckpointManifest m;
    if (!manifest.ok() || !m.ParseFromString(*manifest) || m.files_size() < 1) std::abort();
    s.manifest = *manifest;
    s.data_name = m.files(0).name();
    auto data = loom::ReadFile(s.step_dir + "/" + s.data_name);
    auto latest = loom::ReadFile(s.root + "/latest");
    if (!data.ok() || !latest.ok()) std::abort();
    s.data = *data;
    s.latest = *latest;
    return s;
  }();
  return saved;
}

void Put(const std::string& path, const std::string& bytes) {
  loom::fuzz::WriteScratch(path.substr(loom::fuzz::ScratchDir().size() + 1),
                           reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

namespace loom::fuzz {

// The manifest as saved, one naming a file outside the step directory, one claiming a tensor
// of 1e15 rows; the data file as saved and with a flipped byte; `latest` as saved and naming
// a step that escapes the checkpoint.
absl::Status WriteSeeds(const std::string& dir) {
  const Saved& s = Checkpoint();
  CheckpointManifest m;
  if (!m.ParseFromString(s.manifest)) return absl::DataLossError("saved manifest");
  CheckpointManifest escape = m, huge = m;
  escape.mutable_files(0)->set_name("../../../../../../etc/passwd");
  for (auto& sl : *escape.mutable_slices()) sl.set_file("../../../../../../etc/passwd");
  huge.mutable_tensors(0)->set_global_shape(0, 1'000'000'000'000'000);
  std::string flipped = s.data;
  flipped[flipped.size() / 2] ^= 0x10;
  const std::pair<const char*, std::string> seeds[] = {
      {"manifest_saved", std::string(1, '\0') + s.manifest},
      {"manifest_escape", std::string(1, '\0') + escape.SerializeAsString()},
      {"manifest_huge", std::string(1, '\0') + huge.SerializeAsString()},
      {"data_saved", std::string(1, '\1') + s.data},
      {"data_flipped", std::string(1, '\1') + flipped},
      {"latest_saved", std::string(1, '\2') + s.latest},
      {"latest_escape", std::string(1, '\2') + "../../step_00000001\n"}};
  for (const auto& [name, bytes] : seeds) {
    if (absl::Status st = AtomicWriteFile(absl::StrCat(dir, "/", name), bytes); !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loom::fuzz::QuietProtobuf();
  const Saved& s = Checkpoint();
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int which = data[0] % 3;
  Put(s.step_dir + "/manifest.pb", which == 0 ? rest : s.manifest);
  Put(s.step_dir + "/" + s.data_name, which == 1 ? rest : s.data);
  Put(s.root + "/latest", which == 2 ? rest : s.latest);

  auto step_dir = loom::LatestCheckpoint(s.root);
  if (!step_dir.ok() || !step_dir->has_value()) return 0;
  auto reader = loom::CheckpointReader::Open(**step_dir);
  if (!reader.ok()) return 0;
  (void)(*reader)->VerifyAll();
  // As `loom ckpt verify` does: every tensor and kind read whole.
  for (const loom::CheckpointTensor& t : (*reader)->manifest().tensors()) {
    loom::TensorBox box;
    for (int64_t d : t.global_shape()) {
      box.offset.push_back(0);
      box.extent.push_back(d);
    }
    for (loom::CheckpointKind kind : {loom::WEIGHTS, loom::MASTER, loom::ADAM_M, loom::ADAM_V}) {
      if (!(*reader)->Has(t.name(), kind)) continue;
      std::vector<float> buf(box.numel());
      (void)(*reader)->ReadBox(t.name(), kind, box, buf.data());
    }
  }
  return 0;
}
