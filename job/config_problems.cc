#include "job/config_problems.h"

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/sft_prepare.h"
#include "job/config_defaults.h"
#include "job/job_layout.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/rank_grid.h"
#include "runtime/device.h"

namespace loom {
namespace {

// Upper bounds of job sizes that are not the model's (those are in model/gpt_config.h).
constexpr int64_t kMaxGridDegree = 1 << 16;
constexpr int64_t kMaxGlobalBatch = int64_t{1} << 30;
constexpr int64_t kMaxSteps = int64_t{1} << 40;
constexpr int64_t kMaxEvalBatches = 1 << 20;

std::string Num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// One check per section of the job; each adds one sentence per problem, naming the fields and
// numbers. The grid check derives dp (0 = from the world size) for the batch check.
class Checker {
 public:
  Checker(const JobConfig& c, int world_size, bool check_data = true)
      : check_data_(check_data),
        c_(c),
        m(c.model()),
        p(c.parallel()),
        o(c.optimizer()),
        s(c.lr_schedule()),
        d(c.data()),
        k(c.checkpoint()),
        l(c.logging()),
        rt(c.runtime()),
        world_size(world_size),
        tp(p.tp()),
        pp(p.pp()),
        vs(p.virtual_stages()),
        dp(p.dp()),
        cp(p.cp()) {}

  std::vector<std::string> Run() {
    Model();
    Grid();
    TensorSplit();
    PipelineSplit();
    Batch();
    Sequence();
    OptimizerAndSchedule();
    if (check_data_) DataCheckpointLogging();
    Runtime();
    ContextSplit();
    return std::move(problems);
  }

 private:
  template <typename... Parts>
  void add(Parts&&... parts) {
    problems.push_back(absl::StrCat(parts...));
  }
  void at_least(const char* field, int64_t v, int64_t min) {
    if (v < min) add(field, " must be >= ", min, " (got ", v, ")");
  }
  // Upper bounds keep every product of sizes within int64 (and name the field the user wrote
  // rather than a derived number that overflowed).
  void at_most(const char* field, int64_t v, int64_t max) {
    if (v > max) add(field, " (", v, ") exceeds ", max, ", the most loom accepts");
  }

  // Model shape: the rules live with the model (GptConfig::Problems), named as job fields.
  void Model() {
    for (std::string& problem : GptConfigFromJob(c_).Problems())
      problems.push_back(std::move(problem));
    at_least("model.vocab_pad_multiple", m.vocab_pad_multiple(), 1);
    // LLMC shards hold uint32 ids too (llm.c's LLaMA-3 header); raw ones only uint16. A plan
    // checks no data.
    if (check_data_ && m.vocab() > 65536 && c_.data().format() == DataConfig::RAW_U16) {
      add("model.vocab (", m.vocab(),
          ") exceeds 65536, the most token ids uint16 token shards "
          "(data.format RAW_U16) can hold; LLMC shards with 32-bit ids hold more");
    }
  }

  // The grid: tp x cp x dp x pp.
  void Grid() {
    at_least("world size", world_size, 1);
    at_least("parallel.tp", tp, 1);
    at_least("parallel.pp", pp, 1);
    at_least("parallel.cp", cp, 1);
    at_least("parallel.virtual_stages", vs, 1);
    at_most("parallel.tp", tp, kMaxGridDegree);
    at_most("parallel.pp", pp, kMaxGridDegree);
    at_most("parallel.cp", cp, kMaxGridDegree);
    at_most("parallel.virtual_stages", vs, kMaxGridDegree);
    at_most("parallel.dp", dp, kMaxGridDegree);
    if (dp < 0) add("parallel.dp must be >= 0 (0 = derive from the world size; got ", dp, ")");
    // "parallel.tp (2) * parallel.pp (1)", with parallel.cp named only when it is used.
    const std::string degrees =
        cp == 1 ? absl::StrCat("parallel.tp (", tp, ") * parallel.pp (", pp, ")")
                : absl::StrCat("parallel.tp (", tp, ") * parallel.cp (", cp, ") * parallel.pp (",
                               pp, ")");
    if (tp >= 1 && pp >= 1 && cp >= 1 && world_size >= 1 && dp >= 0) {
      if (dp == 0) {
        if (world_size % (tp * pp * cp) != 0) {
          add("world size ", world_size, " is not divisible by ", degrees, " = ", tp * pp * cp,
              ", so parallel.dp cannot be derived");
        } else {
          dp = world_size / (tp * pp * cp);
        }
      } else if (auto grid = RankGrid::Create(world_size, tp, dp, pp, cp); !grid.ok()) {
        // The rank grid owns the rule (world = tp * cp * dp * pp); said here in the job's fields.
        if (cp == 1) {
          add("world size ", world_size, " != parallel.dp (", dp, ") * parallel.tp (", tp,
              ") * parallel.pp (", pp, ") = ", dp * tp * pp);
        } else {
          add("world size ", world_size, " != parallel.dp (", dp, ") * ", degrees, " = ",
              dp * tp * pp * cp);
        }
      }
    }
  }

  // Tensor parallelism splits heads, kv heads and the MLP; the vocab is padded instead.
  void TensorSplit() {
    if (tp >= 1) {
      if (m.heads() > 0 && m.heads() % tp != 0) {
        add("model.heads (", m.heads(), ") is not divisible by parallel.tp (", tp, ")");
      }
      if (m.kv_heads() > 0 && m.kv_heads() % tp != 0) {
        add("model.kv_heads (", m.kv_heads(), ") is not divisible by parallel.tp (", tp, ")");
      }
      if (m.ffn_hidden() > 0 && m.ffn_hidden() % tp != 0) {
        add("model.ffn_hidden (", m.ffn_hidden(), ") is not divisible by parallel.tp (", tp, ")");
      }
    }
  }

  // Pipeline split.
  void PipelineSplit() {
    if (pp >= 1 && vs >= 1) {
      const int64_t chunks = pp * vs;
      if (p.stage_layers_size() == 0) {
        if (m.layers() > 0 && m.layers() % chunks != 0) {
          add("model.layers (", m.layers(), ") is not divisible by parallel.pp (", pp,
              ") * parallel.virtual_stages (", vs, ") = ", chunks,
              "; set parallel.stage_layers to split them unevenly");
        }
      } else {
        if (p.stage_layers_size() != chunks) {
          add("parallel.stage_layers has ", p.stage_layers_size(),
              " entries, expected parallel.pp (", pp, ") * parallel.virtual_stages (", vs,
              ") = ", chunks);
        }
        int64_t sum = 0;
        for (int i = 0; i < p.stage_layers_size(); ++i) {
          sum += p.stage_layers(i);
          if (p.stage_layers(i) < 1) {
            add("parallel.stage_layers[", i, "] is ", p.stage_layers(i),
                "; every model chunk needs at least 1 layer");
          }
        }
        if (m.layers() > 0 && sum != m.layers()) {
          add("parallel.stage_layers sums to ", sum, ", expected model.layers (", m.layers(), ")");
        }
      }
    }
    if (vs > 1 && p.schedule() == ParallelConfig::ZERO_BUBBLE) {
      add("parallel.schedule ZERO_BUBBLE is ZB-H1, one model chunk per stage: "
          "parallel.virtual_stages must be 1 (got ",
          vs, "); the interleaved zero-bubble variant (ZB-V) is not built");
    } else if (vs > 1 && p.schedule() != ParallelConfig::INTERLEAVED) {
      add("parallel.virtual_stages (", vs, ") > 1 needs parallel.schedule INTERLEAVED (got ",
          ParallelConfig::Schedule_Name(p.schedule()), ")");
    }
    if (vs > 1 && pp == 1) {
      add("parallel.virtual_stages (", vs, ") > 1 needs parallel.pp > 1 (got 1)");
    }
    if (p.schedule() == ParallelConfig::INTERLEAVED && vs == 1) {
      add("parallel.schedule INTERLEAVED needs parallel.virtual_stages > 1 (got 1)");
    }
    if (!(p.grad_bucket_mb() > 0) || !std::isfinite(p.grad_bucket_mb())) {
      add("parallel.grad_bucket_mb must be > 0 (got ", Num(p.grad_bucket_mb()), ")");
    }
  }

  // Batch.
  void Batch() {
    const int64_t micro = p.micro_batch_size(), global = p.global_batch_size();
    at_least("parallel.micro_batch_size", micro, 1);
    at_least("parallel.global_batch_size", global, 1);
    at_most("parallel.global_batch_size", global, kMaxGlobalBatch);
    if (micro >= 1 && global >= 1 && dp >= 1) {
      if (global % (micro * dp) != 0) {
        add("parallel.global_batch_size (", global,
            ") is not divisible by "
            "parallel.micro_batch_size (",
            micro, ") * dp (", dp, ") = ", micro * dp);
      } else if (p.schedule() == ParallelConfig::INTERLEAVED && pp > 1 && vs > 1) {
        // The schedule owns its rules (interleaved needs m % p == 0); said in the job's fields.
        PipelineShape shape;
        shape.stages = static_cast<int>(pp);
        shape.virtual_stages = static_cast<int>(vs);
        shape.micro_batches = static_cast<int>(global / (micro * dp));
        if (!ValidatePipelineShape(PipelineScheduleKind::kInterleaved, shape).ok()) {
          add("parallel.schedule INTERLEAVED needs the micro-batches per step (",
              "parallel.global_batch_size ", global, " / (parallel.micro_batch_size ", micro,
              " * dp ", dp, ") = ", global / (micro * dp), ") to be a multiple of parallel.pp (",
              pp, ")");
        }
      }
    }
  }

  // Sequence.
  void Sequence() {
    if (m.max_seq() > 0) {
      at_least("data.seq_len", d.seq_len(), 1);
      if (d.seq_len() > m.max_seq()) {
        add("data.seq_len (", d.seq_len(), ") exceeds model.max_seq (", m.max_seq(), ")");
      }
    }
    if (p.sequence_parallel() && tp > 1 && d.seq_len() > 0 && d.seq_len() % tp != 0) {
      add("parallel.sequence_parallel splits data.seq_len (", d.seq_len(), ") over parallel.tp (",
          tp, ") ranks, but ", d.seq_len(), " is not divisible by ", tp);
    }
  }

  // Optimizer and schedule.
  void OptimizerAndSchedule() {
    if (!(o.lr() > 0) || !std::isfinite(o.lr())) {
      add("optimizer.lr must be > 0 (got ", Num(o.lr()), ")");
    }
    if (!(o.beta1() >= 0 && o.beta1() < 1)) {
      add("optimizer.beta1 must be in [0, 1) (got ", Num(o.beta1()), ")");
    }
    if (!(o.beta2() >= 0 && o.beta2() < 1)) {
      add("optimizer.beta2 must be in [0, 1) (got ", Num(o.beta2()), ")");
    }
    if (!(o.eps() > 0)) add("optimizer.eps must be > 0 (got ", Num(o.eps()), ")");
    if (!(o.weight_decay() >= 0)) {
      add("optimizer.weight_decay must be >= 0 (got ", Num(o.weight_decay()), ")");
    }
    if (!(o.grad_clip() >= 0)) {
      add("optimizer.grad_clip must be >= 0 (0 = no clipping; got ", Num(o.grad_clip()), ")");
    }
    at_least("lr_schedule.total_steps", s.total_steps(), 1);
    at_most("lr_schedule.total_steps", s.total_steps(), kMaxSteps);
    at_least("lr_schedule.warmup_steps", s.warmup_steps(), 0);
    if (s.total_steps() >= 1 && s.warmup_steps() > s.total_steps()) {
      add("lr_schedule.warmup_steps (", s.warmup_steps(), ") exceeds lr_schedule.total_steps (",
          s.total_steps(), ")");
    }
    if (!(s.min_lr() >= 0)) add("lr_schedule.min_lr must be >= 0 (got ", Num(s.min_lr()), ")");
    if (o.lr() > 0 && s.min_lr() > o.lr()) {
      add("lr_schedule.min_lr (", Num(s.min_lr()), ") exceeds optimizer.lr (", Num(o.lr()), ")");
    }
    at_least("runtime.stop_at_step", rt.stop_at_step(), 0);
    if (s.total_steps() >= 1 && rt.stop_at_step() > s.total_steps()) {
      add("runtime.stop_at_step (", rt.stop_at_step(), ") exceeds lr_schedule.total_steps (",
          s.total_steps(), ")");
    }
  }

  // Data, checkpoints, logging.
  void DataCheckpointLogging() {
    if (d.train().empty()) {
      add("data.train is empty; it must name the training shards (a glob such as "
          "data/demo/train_*.bin)");
    }
    // data.reset_position_ids has no invalid value: it applies to data whose token flags mark
    // document starts (known only once the shards are open) and is a no-op for other data.
    at_least("checkpoint.interval", k.interval(), 0);
    at_least("checkpoint.keep_last", k.keep_last(), 0);
    if (k.interval() > 0 && k.dir().empty()) {
      add("checkpoint.interval (", k.interval(), ") is set but checkpoint.dir is empty");
    }
    at_least("logging.interval", l.interval(), 1);
    if (l.eval_interval() > 0) at_most("logging.eval_batches", l.eval_batches(), kMaxEvalBatches);
    at_least("logging.eval_interval", l.eval_interval(), 0);
    at_least("logging.sample_interval", l.sample_interval(), 0);
    if (l.eval_interval() > 0) {
      if (d.val().empty()) {
        add("logging.eval_interval (", l.eval_interval(), ") is set but data.val is empty");
      }
      at_least("logging.eval_batches", l.eval_batches(), 1);
    }
    if (l.sample_interval() > 0) {
      at_least("logging.sample_length", l.sample_length(), 1);
      if (m.max_seq() > 0 && l.sample_length() > m.max_seq()) {
        add("logging.sample_length (", l.sample_length(), ") exceeds model.max_seq (", m.max_seq(),
            ")");
      }
    }
    for (std::string& problem : SftDataProblems(c_)) problems.push_back(std::move(problem));
  }

  // Runtime.
  void Runtime() {
    at_least("runtime.collective_timeout_s", rt.collective_timeout_s(), 1);
    at_least("runtime.threads_per_rank", rt.threads_per_rank(), 0);
    at_least("runtime.max_nonfinite_steps", rt.max_nonfinite_steps(), 1);
    at_least("runtime.max_duration_s", rt.max_duration_s(), 0);
    if (rt.max_duration_s() > 0) {
      at_least("runtime.stop_margin_s", rt.stop_margin_s(), 0);
      if (rt.stop_margin_s() >= rt.max_duration_s()) {
        add("runtime.stop_margin_s (", rt.stop_margin_s(),
            ") must be less than runtime.max_duration_s (", rt.max_duration_s(), ")");
      }
    }
    if (c_.precision() == JobConfig::BF16 &&
        (rt.backend() == RuntimeConfig::CPU || rt.backend() == RuntimeConfig::TEST)) {
      add("precision BF16 needs a GPU, but runtime.backend is ",
          rt.backend() == RuntimeConfig::CPU ? "CPU" : "TEST",
          " (the CPU kernels, which the test device runs too, are fp32 only)");
    }
  }

  // Context parallelism: the sequence is cut into 2 * cp chunks (each cp rank holds two, for a
  // balanced causal load); sequence parallelism then splits a cp rank's rows over tp.
  void ContextSplit() {
    if (cp <= 1) return;
    const int64_t T = d.seq_len();
    if (T > 0 && T % (2 * cp) != 0) {
      add("parallel.cp (", cp, ") cuts data.seq_len (", T, ") into 2 * cp = ", 2 * cp,
          " chunks, but ", T, " is not divisible by ", 2 * cp);
    } else if (T > 0 && p.sequence_parallel() && tp > 1 &&
               (T / cp * p.micro_batch_size()) % tp != 0) {
      add("parallel.sequence_parallel splits a context rank's rows (parallel.micro_batch_size ",
          p.micro_batch_size(), " x data.seq_len ", T, " / parallel.cp ", cp, " = ",
          T / cp * p.micro_batch_size(), ") over parallel.tp (", tp,
          "), which does not divide them");
    }
  }

  // False for LayoutProblems: the data, checkpoint and logging fields (and what the token shard
  // format limits) are not checked.
  const bool check_data_;
  const JobConfig& c_;
  const ModelConfig& m;
  const ParallelConfig& p;
  const OptimizerConfig& o;
  const LrScheduleConfig& s;
  const DataConfig& d;
  const CheckpointConfig& k;
  const LoggingConfig& l;
  const RuntimeConfig& rt;
  const int world_size;
  const int64_t tp, pp, vs;
  int64_t dp;
  const int64_t cp;
  std::vector<std::string> problems;
};

}  // namespace

std::vector<std::string> ConfigProblems(const JobConfig& config_in, int world_size) {
  JobConfig c = config_in;
  ApplyDefaults(&c);  // idempotent: a config from LoadJobConfig or JobLayout already has them
  return Checker(c, world_size).Run();
}

std::vector<std::string> LayoutProblems(const JobConfig& config_in, int world_size) {
  JobConfig c = config_in;
  ApplyDefaults(&c);
  return Checker(c, world_size, /*check_data=*/false).Run();
}

std::vector<std::string> SftDataProblems(const JobConfig& config) {
  std::vector<std::string> out;
  const SftDataConfig& sft = config.data().sft();
  if (!sft.chat_template().empty()) {
    auto t = LoadSftTemplate(sft.chat_template());
    if (!t.ok()) out.push_back(absl::StrCat("data.sft.chat_template: ", t.status().message()));
  }
  std::error_code ec;
  if (!sft.tokenizer().empty() && !std::filesystem::exists(sft.tokenizer(), ec)) {
    out.push_back(absl::StrCat("data.sft.tokenizer \"", sft.tokenizer(),
                               "\" does not exist (a tokenizer.json, a SentencePiece .model or a "
                               "directory holding either)"));
  }
  return out;
}

absl::Status ValidateJobConfig(const JobConfig& config, int world_size) {
  const std::vector<std::string> problems = ConfigProblems(config, world_size);
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(problems.size(),
                                                 problems.size() == 1 ? " problem" : " problems",
                                                 " in the job config (world size ", world_size,
                                                 "):\n  - ", absl::StrJoin(problems, "\n  - ")));
}

std::vector<std::string> NotYetSupported(const JobConfig& c) {
  std::vector<std::string> out;
  auto add = [&](auto&&... parts) { out.push_back(absl::StrCat(parts...)); };
  // BF16 with an explicit CPU backend is a contradiction ConfigProblems reports; here the
  // backend AUTO falls to the CPU for lack of a GPU.
  if (c.precision() == JobConfig::BF16 && c.runtime().backend() == RuntimeConfig::AUTO &&
      CudaDeviceCount() == 0) {
    add("precision BF16 needs a CUDA GPU, but ", CudaUnavailableReason(),
        " (the CPU backend computes in FP32 only)");
  }
  // Ring attention (parallel.cp) runs on every backend: CPU and test-device block kernels, and
  // CUDA ones (ops/cuda/attention_block.h), so nothing about cp is refused here.
  return out;
}

}  // namespace loom
