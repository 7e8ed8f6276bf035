#include "data/data_prepare.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {

namespace fs = std::filesystem;

namespace {

bool IsShardName(const std::string& name) {
  for (const char* prefix : {"train_", "val_"}) {
    const std::string p = prefix;
    if (name.size() == p.size() + 10 && name.compare(0, p.size(), p) == 0 &&
        name.compare(name.size() - 4, 4, ".bin") == 0) {
      bool digits = true;
      for (size_t i = p.size(); i < p.size() + 6; ++i) digits &= std::isdigit(name[i]) != 0;
      if (digits) return true;
    }
  }
  return false;
}

// Files of the inputs, in the documented order. Paths inside `skip_dir` (the output) are left
// out so that re-running with the output under an input does not read old shards.
absl::StatusOr<std::vector<std::string>> CollectDocuments(const std::vector<std::string>& inputs,
                                                          const fs::path& skip_dir) {
  std::vector<std::string> documents;
  std::set<fs::path> seen;
  // A symbolic link met while walking a directory is an alias of its target (Debian's
  // /usr/share/common-licenses has GPL -> GPL-3): it is skipped when the target is read too.
  // Anything else seen twice is an error, since a document would silently count double.
  auto add = [&](const fs::path& p, bool link_in_dir = false) -> absl::Status {
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(p, ec);
    if (ec) canonical = p;
    if (!seen.insert(canonical).second) {
      if (link_in_dir) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(
          "data prepare: ", p.string(), " is given twice (directly or inside an input directory)"));
    }
    documents.push_back(p.string());
    return absl::OkStatus();
  };
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(input, ec);
    if (ec || !fs::exists(st)) {
      return absl::NotFoundError(absl::StrCat("data prepare: input ", input, " does not exist"));
    }
    if (fs::is_regular_file(st)) {
      LOOM_RETURN_IF_ERROR(add(input));
      continue;
    }
    if (!fs::is_directory(st)) {
      return absl::InvalidArgumentError(
          absl::StrCat("data prepare: input ", input, " is neither a file nor a directory"));
    }
    std::vector<fs::path> files, links;
    fs::recursive_directory_iterator it(input, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code canon_ec;
      if (it->is_directory() && fs::weakly_canonical(it->path(), canon_ec) == skip_dir) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) (it->is_symlink() ? links : files).push_back(it->path());
    }
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("data prepare: cannot walk input directory ", input, ": ", ec.message()));
    }
    std::sort(files.begin(), files.end(),
              [](const fs::path& a, const fs::path& b) { return a.string() < b.string(); });
    auto by_name = [](const fs::path& a, const fs::path& b) { return a.string() < b.string(); };
    std::sort(links.begin(), links.end(), by_name);
    for (const fs::path& f : files) LOOM_RETURN_IF_ERROR(add(f));
    for (const fs::path& f : links) LOOM_RETURN_IF_ERROR(add(f, /*link_in_dir=*/true));
  }
  return documents;
}

// Accumulates one split's tokens and writes a shard whenever shard_tokens are buffered, with
// uint16 ids (id_bytes 2) or uint32 ids (4).
class ShardSink {
 public:
  ShardSink(std::string dir, std::string split, int64_t shard_tokens, int id_bytes)
      : dir_(std::move(dir)),
        split_(std::move(split)),
        shard_tokens_(shard_tokens),
        id_bytes_(id_bytes) {}

  absl::Status Append(const std::vector<int32_t>& tokens) {
    size_t i = 0;
    while (i < tokens.size()) {
      const size_t room = static_cast<size_t>(shard_tokens_) - buffer_.size();
      const size_t take = std::min(room, tokens.size() - i);
      buffer_.insert(buffer_.end(), tokens.begin() + i, tokens.begin() + i + take);
      i += take;
      if (buffer_.size() == static_cast<size_t>(shard_tokens_)) LOOM_RETURN_IF_ERROR(Flush());
    }
    return absl::OkStatus();
  }

  absl::Status Flush() {
    if (buffer_.empty()) return absl::OkStatus();
    const std::string path =
        (fs::path(dir_) / absl::StrFormat("%s_%06d.bin", split_, shards_.size())).string();
    LOOM_RETURN_IF_ERROR(WriteShardIds(path, buffer_, id_bytes_));
    tokens_ += static_cast<int64_t>(buffer_.size());
    shards_.push_back(path);
    buffer_.clear();
    return absl::OkStatus();
  }

  int64_t tokens() const { return tokens_; }
  const std::vector<std::string>& shards() const { return shards_; }

 private:
  std::string dir_;
  std::string split_;
  int64_t shard_tokens_;
  int id_bytes_;
  std::vector<int32_t> buffer_;
  std::vector<std::string> shards_;
  int64_t tokens_ = 0;
};

// A piece of a document to encode, and where its ids go.
struct Piece {
  std::string text;
  bool first = false, last = false;  // of its document: BOS before, EOT after
  bool val = false;
  std::vector<int32_t> ids;
};

// Where a document may be cut: just after a '\n' between printable ASCII characters (see
// Tokenizer::SplitsAfterNewline), the last such place at or before `limit`; 0 when none.
size_t CutPoint(std::string_view text, size_t limit) {
  auto printable = [](char c) { return c >= 0x21 && c <= 0x7E; };
  for (size_t p = std::min(limit, text.size() - 1); p >= 2; --p) {
    if (text[p - 1] == '\n' && printable(text[p - 2]) && printable(text[p])) return p;
  }
  return 0;
}

// Reads documents, cuts them into pieces, encodes batches of pieces on `threads` threads and
// hands the ids to the sinks in document order.
class Encoder {
 public:
  Encoder(const Tokenizer& tokenizer, const DataPrepareOptions& options, int threads,
          ShardSink* train, ShardSink* val)
      : tok_(tokenizer), options_(options), threads_(threads), train_(train), val_(val) {}

  // Reads one document and queues its pieces; sets *binary when it holds NUL bytes.
  absl::Status AddDocument(const std::string& path, bool is_val, bool* binary) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return FileError(errno, "data prepare: open document", path);
    const size_t piece = static_cast<size_t>(std::max<int64_t>(options_.piece_bytes, 1));
    const bool cut = tok_.SplitsAfterNewline();
    std::string pending;  // read but not yet queued
    std::string block(std::min<size_t>(piece, 1 << 20), '\0');
    bool first = true;
    absl::Status status;
    for (;;) {
      const size_t n = std::fread(block.data(), 1, block.size(), f);
      if (std::memchr(block.data(), '\0', n) != nullptr) *binary = true;
      pending.append(block.data(), n);
      input_bytes_ += static_cast<int64_t>(n);
      if (n < block.size()) {
        if (std::ferror(f)) status = FileError(errno, "data prepare: read document", path);
        break;
      }
      // Queue whole pieces while more than one piece is pending (the rest may still grow).
      while (cut && pending.size() > piece) {
        const size_t p = CutPoint(pending, piece);
        if (p == 0) break;
        status = Queue(pending.substr(0, p), first, false, is_val);
        if (!status.ok()) break;
        pending.erase(0, p);
        first = false;
      }
      if (!status.ok()) break;
    }
    std::fclose(f);
    LOOM_RETURN_IF_ERROR(status);
    return Queue(std::move(pending), first, true, is_val);
  }

  absl::Status Finish() { return RunBatch(); }
  int64_t input_bytes() const { return input_bytes_; }
  double encode_seconds() const { return encode_seconds_; }

 private:
  absl::Status Queue(std::string text, bool first, bool last, bool is_val) {
    batch_bytes_ += text.size();
    batch_.push_back({std::move(text), first, last, is_val, {}});
    // A batch holds a few pieces per thread, so the threads stay busy and memory stays bounded.
    const size_t target = static_cast<size_t>(threads_) * 4 *
                          static_cast<size_t>(std::max<int64_t>(options_.piece_bytes, 1 << 16));
    if (batch_bytes_ >= target || batch_.size() >= static_cast<size_t>(threads_) * 256) {
      return RunBatch();
    }
    return absl::OkStatus();
  }

  absl::Status RunBatch() {
    if (batch_.empty()) return absl::OkStatus();
    const auto start = std::chrono::steady_clock::now();
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < batch_.size();) {
        Piece& p = batch_[i];
        if (p.first && tok_.bos() >= 0) p.ids.push_back(tok_.bos());
        tok_.Encode(p.text, &p.ids);
        if (p.last) p.ids.push_back(tok_.eot());
        std::string().swap(p.text);
      }
    };
    const int n = static_cast<int>(std::min<size_t>(threads_, batch_.size()));
    std::vector<std::thread> pool;
    for (int t = 1; t < n; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    encode_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (Piece& p : batch_) LOOM_RETURN_IF_ERROR((p.val ? val_ : train_)->Append(p.ids));
    batch_.clear();
    batch_bytes_ = 0;
    return absl::OkStatus();
  }

  const Tokenizer& tok_;
  const DataPrepareOptions& options_;
  int threads_;
  ShardSink *train_, *val_;
  std::vector<Piece> batch_;
  size_t batch_bytes_ = 0;
  int64_t input_bytes_ = 0;
  double encode_seconds_ = 0;
};

}  // namespace

std::vector<int64_t> ValidationDocuments(int64_t documents, double val_fraction) {
  std::vector<int64_t> val;
  if (!(val_fraction > 0) || documents < 2) return val;
  const int64_t n_val =
      std::clamp<int64_t>(std::llround(val_fraction * documents), 1, documents - 1);
  // Document i is chosen when floor((i+1) * n_val / D) steps up: exactly n_val documents,
  // spread evenly over the (sorted) inputs rather than bunched at one end.
  for (int64_t i = 0; i < documents; ++i) {
    if ((i + 1) * n_val / documents > i * n_val / documents) val.push_back(i);
  }
  return val;
}

absl::StatusOr<std::string> WriteTokenizerBeside(const std::string& out_dir,
                                                 const Tokenizer& tokenizer,
                                                 const std::string& source_in) {
  // Under the name the trainer looks for; the other name is removed so an earlier run's
  // tokenizer cannot be found first.
  const bool model_file = tokenizer.type() == "sentencepiece";
  const std::string path =
      (fs::path(out_dir) / (model_file ? "tokenizer.model" : "tokenizer.json")).string();
  std::string bytes;
  if (source_in.empty()) {
    bytes = ByteTokenizer().DescriptionJson();
  } else {
    std::string source = source_in;
    std::error_code ec;
    if (fs::is_directory(source, ec)) {
      source = (fs::path(source) / (model_file ? "tokenizer.model" : "tokenizer.json")).string();
    }
    LOOM_ASSIGN_OR_RETURN(bytes, ReadFile(source));
  }
  LOOM_RETURN_IF_ERROR(AtomicWriteFile(path, bytes));
  std::error_code ec;
  fs::remove(fs::path(out_dir) / (model_file ? "tokenizer.json" : "tokenizer.model"), ec);
  return path;
}

namespace {
// Encodes `documents` into out_dir (which exists).
absl::StatusOr<DataPrepareResult> PrepareInto(const DataPrepareOptions& options,
                                              const std::vector<std::string>& documents,
                                              const fs::path& out_dir, const Tokenizer& tokenizer);
}  // namespace

absl::StatusOr<DataPrepareResult> PrepareData(const DataPrepareOptions& options) {
  if (options.inputs.empty()) {
    return absl::InvalidArgumentError("data prepare: no --input given");
  }
  if (options.out_dir.empty()) return absl::InvalidArgumentError("data prepare: no --out given");
  if (!(options.val_fraction >= 0 && options.val_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data prepare: --val-fraction must be in [0, 1), got ", options.val_fraction));
  }
  if (options.shard_tokens < 1 || options.shard_tokens > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("data prepare: --shard-tokens must be in 1..",
                                                   INT32_MAX,
                                                   " (the llm.c header holds an "
                                                   "int32 count), got ",
                                                   options.shard_tokens));
  }
  std::error_code ec;
  fs::path out_dir = fs::weakly_canonical(options.out_dir, ec);
  if (ec) out_dir = options.out_dir;
  const bool out_existed = fs::exists(out_dir, ec);

  // Shards from an earlier run would be picked up by a train_*.bin glob next to the new ones.
  std::vector<fs::path> stale;
  if (out_existed) {
    for (fs::directory_iterator it(out_dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (IsShardName(it->path().filename().string())) stale.push_back(it->path());
    }
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("data prepare: cannot list ", options.out_dir, ": ", ec.message()));
    }
  }
  if (!stale.empty() && !options.overwrite) {
    return absl::AlreadyExistsError(absl::StrCat(
        "data prepare: ", options.out_dir, " already holds shards (", stale.front().string(),
        stale.size() > 1 ? absl::StrCat(" and ", stale.size() - 1, " more") : std::string(),
        "); use an empty directory or pass --overwrite"));
  }

  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data prepare: --threads must be >= 0 (0: one per hardware thread), got ",
                     options.threads));
  }
  // The tokenizer before anything is written: a bad one leaves no output behind.
  std::unique_ptr<Tokenizer> tokenizer = std::make_unique<ByteTokenizer>();
  if (!options.tokenizer.empty()) {
    auto loaded = LoadTokenizer(options.tokenizer);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("data prepare: --tokenizer: ", loaded.status().message()));
    }
    tokenizer = std::move(*loaded);
  }
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> documents,
                        CollectDocuments(options.inputs, out_dir));
  if (documents.empty()) {
    return absl::InvalidArgumentError("data prepare: the inputs hold no files");
  }
  for (const fs::path& p : stale) {
    if (!fs::remove(p, ec) || ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("data prepare: cannot remove old shard ", p.string(), ": ", ec.message()));
    }
  }
  // The outermost directory this call creates (out_dir, or an ancestor that is missing too).
  fs::path created = out_dir;
  while (!out_existed && created.has_parent_path() && created.parent_path() != created &&
         !fs::exists(created.parent_path(), ec)) {
    created = created.parent_path();
  }
  LOOM_RETURN_IF_ERROR(MakeDirs(out_dir.string()));
  auto result = PrepareInto(options, documents, out_dir, *tokenizer);
  if (!result.ok() && !out_existed) {
    // The directories are this call's own: leave nothing behind.
    fs::remove_all(created, ec);
  }
  return result;
}

namespace {

absl::StatusOr<DataPrepareResult> PrepareInto(const DataPrepareOptions& options,
                                              const std::vector<std::string>& documents,
                                              const fs::path& out_dir, const Tokenizer& tokenizer) {
  DataPrepareResult result;
  result.documents = static_cast<int64_t>(documents.size());
  result.tokenizer_type = std::string(tokenizer.type());
  result.vocab_size = tokenizer.vocab_size();
  result.id_bytes = ShardIdBytes(tokenizer.vocab_size());
  result.threads = options.threads > 0
                       ? options.threads
                       : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const std::vector<int64_t> val = ValidationDocuments(result.documents, options.val_fraction);
  ShardSink train(out_dir.string(), "train", options.shard_tokens, result.id_bytes);
  ShardSink valid(out_dir.string(), "val", options.shard_tokens, result.id_bytes);
  Encoder encoder(tokenizer, options, result.threads, &train, &valid);
  size_t next_val = 0;
  for (int64_t i = 0; i < result.documents; ++i) {
    const bool is_val = next_val < val.size() && val[next_val] == i;
    if (is_val) ++next_val;
    bool binary = false;
    LOOM_RETURN_IF_ERROR(encoder.AddDocument(documents[i], is_val, &binary));
    if (binary) result.binary_documents.push_back(documents[i]);
  }
  LOOM_RETURN_IF_ERROR(encoder.Finish());
  LOOM_RETURN_IF_ERROR(train.Flush());
  LOOM_RETURN_IF_ERROR(valid.Flush());
  result.input_bytes = encoder.input_bytes();
  result.encode_seconds = encoder.encode_seconds();

  LOOM_ASSIGN_OR_RETURN(result.tokenizer_path,
                        WriteTokenizerBeside(out_dir.string(), tokenizer, options.tokenizer));
  result.val_documents = static_cast<int64_t>(val.size());
  result.train_documents = result.documents - result.val_documents;
  result.train_tokens = train.tokens();
  result.val_tokens = valid.tokens();
  result.train_shards = train.shards();
  result.val_shards = valid.shards();
  return result;
}

}  // namespace

}  // namespace loom
