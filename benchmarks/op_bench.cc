#include "benchmarks/op_bench.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/optimizer.h"
#include "ops/rope.h"
#include "runtime/status.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"
#include "runtime/timer.h"

namespace loom::bench {
namespace {

constexpr double kAutoSeconds = 0.2;  // auto mode times each op for about this long
constexpr int kAutoMaxIters = 50;
constexpr double kSlowWarmupMs = 1000;  // a warm-up this slow is the measurement

std::string Dims(int64_t a, int64_t b) { return absl::StrCat(a, "x", b); }

// Owns the device, dtypes and timing policy; each op family's benchmark borrows it.
class Runner {
 public:
  Runner(const BenchOptions& options, const Roofline& roofline,
         const std::function<void(const OpTiming&)>& on_row, std::vector<OpTiming>* rows)
      : device_(options.device),
        iters_(options.iters),
        roofline_(roofline),
        on_row_(on_row),
        rows_(rows) {
    act = device_->is_cuda() ? DType::kBF16 : DType::kF32;
  }

  Device* device() const { return device_; }
  bool cuda() const { return device_->is_cuda(); }
  size_t act_bytes() const { return DTypeSize(act); }

  // A tensor of uniform values in [-scale, scale) from a cheap hash of (seed, index), written
  // in chunks so that a 1.6 GB logits tensor needs no second full-size host copy.
  absl::StatusOr<Tensor> Rand(const Shape& shape, DType dtype, float scale = 1.0f) {
    LOOM_ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(shape, dtype, device_));
    const uint64_t seed = ++seed_;
    const int64_t chunk = int64_t{1} << 22;
    std::vector<float> host(std::min(chunk, t.numel()));
    for (int64_t off = 0; off < t.numel(); off += chunk) {
      const int64_t n = std::min(chunk, t.numel() - off);
#pragma omp parallel for
      for (int64_t i = 0; i < n; ++i) {
        uint64_t z = (seed << 40) ^ static_cast<uint64_t>(off + i);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        host[i] = scale * (static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
      }
      LOOM_RETURN_IF_ERROR(t.FlatView(off, n).CopyFromFloats(absl::MakeConstSpan(host.data(), n)));
    }
    return t;
  }
  absl::StatusOr<Tensor> Zeros(const Shape& shape, DType dtype) {
    return Tensor::Zeros(shape, dtype, device_);
  }
  // i32 ids in [0, vocab).
  absl::StatusOr<Tensor> Ids(const Shape& shape, int64_t vocab) {
    std::vector<int32_t> ids(shape.numel());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
    return Tensor::FromVectorI32(ids, shape).To(device_);
  }

  // Times fn and records a row.
  absl::Status Time(OpTiming row, const std::function<absl::Status()>& fn) {
    LOOM_RETURN_IF_ERROR(device_->Synchronize());
    Timer warm;
    LOOM_RETURN_IF_ERROR(fn());
    LOOM_RETURN_IF_ERROR(device_->Synchronize());
    const double warm_ms = warm.Millis();
    if (warm_ms > kSlowWarmupMs) {
      row.ms = warm_ms;
      row.iters = 1;
    } else {
      int n = iters_;
      if (n <= 0) {
        n = static_cast<int>(std::ceil(kAutoSeconds * 1e3 / std::max(warm_ms, 1e-3)));
        n = std::clamp(n, 1, kAutoMaxIters);
      }
      LOOM_ASSIGN_OR_RETURN(row.ms, TimeCalls(n, fn));
      row.iters = n;
    }
    Rate(&row);
    rows_->push_back(row);
    on_row_(row);
    return absl::OkStatus();
  }

  DType act = DType::kF32;         // activations and weights
  const DType stat = DType::kF32;  // statistics, parameter gradients, losses, optimizer state

 private:
  absl::StatusOr<double> TimeCalls(int n, const std::function<absl::Status()>& fn) {
    if (!cuda()) {
      // The median call: on a shared machine a call that lost its core to another process
      // for a scheduler slice would otherwise dominate the mean.
      std::vector<double> ms(n);
      for (int i = 0; i < n; ++i) {
        Timer t;
        LOOM_RETURN_IF_ERROR(fn());
        ms[i] = t.Millis();
      }
      std::nth_element(ms.begin(), ms.begin() + n / 2, ms.end());
      return ms[n / 2];
    }
    LOOM_ASSIGN_OR_RETURN(auto start, Event::Create(device_));
    LOOM_ASSIGN_OR_RETURN(auto stop, Event::Create(device_));
    Stream stream = Stream::Default(device_);
    LOOM_RETURN_IF_ERROR(start->Record(stream));
    for (int i = 0; i < n; ++i) LOOM_RETURN_IF_ERROR(fn());
    LOOM_RETURN_IF_ERROR(stop->Record(stream));
    LOOM_RETURN_IF_ERROR(stop->Synchronize());
    LOOM_ASSIGN_OR_RETURN(float ms, stop->ElapsedMs(*start));
    return static_cast<double>(ms) / n;
  }

  // Fills in the roofline fraction and the target of a timed row.
  void Rate(OpTiming* row) const {
    const double s = row->ms * 1e-3;
    const bool gpu = cuda();
    switch (row->bound) {
      case Bound::kGemm:
        row->fraction = row->flops / s / roofline_.flops;
        row->target = gpu ? 0.70 : 0.80;
        break;
      case Bound::kMemory:
        row->fraction = row->bytes / s / roofline_.bytes_per_s;
        row->target = gpu ? 0.70 : 0.50;
        break;
      case Bound::kAttention: {
        row->fraction = row->flops / s / roofline_.flops;
        const bool forward = row->op.find("fwd") != std::string::npos;
        row->target = gpu ? (forward ? 0.50 : 0.0) : (row->seq >= 1024 ? 1.0 / 1.5 : 0.0);
        break;
      }
    }
    row->pass = row->target == 0 || row->fraction >= row->target;
  }

  Device* device_;
  int iters_;
  const Roofline& roofline_;
  const std::function<void(const OpTiming&)>& on_row_;
  std::vector<OpTiming>* rows_;
  uint64_t seed_ = 0;
};

OpTiming Row(const BenchShape& s, std::string op, std::string shape, Bound bound, double flops,
             double bytes) {
  OpTiming r;
  r.op = std::move(op);
  r.shape = std::move(shape);
  r.set = s.name;
  r.seq = s.seq;
  r.bound = bound;
  r.flops = flops;
  r.bytes = bytes;
  return r;
}

// ---- the op families, in the order a GPT block runs them ----------------------------------

absl::Status BenchEmbedding(Runner& r, const BenchShape& s) {
  const int64_t n = s.batch * s.seq, c = s.channels;
  const double e = r.act_bytes(), g = DTypeSize(r.stat);
  LOOM_ASSIGN_OR_RETURN(Tensor tokens, r.Ids(Shape{s.batch, s.seq}, s.vocab));
  LOOM_ASSIGN_OR_RETURN(Tensor wte, r.Rand(Shape{s.vocab, c}, r.act, 0.02f));
  LOOM_ASSIGN_OR_RETURN(Tensor wpe, r.Rand(Shape{s.seq, c}, r.act, 0.02f));
  LOOM_ASSIGN_OR_RETURN(Tensor out, r.Zeros(Shape{s.batch, s.seq, c}, r.act));
  const std::string shape = absl::StrCat(Dims(s.batch, s.seq), " V", s.vocab, " C", c);
  // Forward: a wte row and a wpe row read, an output row written, per token.
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "embedding fwd", shape, Bound::kMemory, 0, 3.0 * n * c * e),
                              [&] { return ops::EmbeddingForward(tokens, wte, &wpe, out); }));
  LOOM_ASSIGN_OR_RETURN(Tensor dwte, r.Zeros(Shape{s.vocab, c}, r.stat));
  LOOM_ASSIGN_OR_RETURN(Tensor dwpe, r.Zeros(Shape{s.seq, c}, r.stat));
  // Backward: dout read; a dwte row and the dwpe rows read and written per token.
  const double bwd_bytes = n * c * e + 2.0 * n * c * g + 2.0 * s.seq * c * g;
  return r.Time(Row(s, "embedding bwd", shape, Bound::kMemory, 0, bwd_bytes),
                [&] { return ops::EmbeddingBackward(tokens, out, dwte, &dwpe); });
}

absl::Status BenchLayerNorm(Runner& r, const BenchShape& s) {
  const int64_t n = s.batch * s.seq, c = s.channels;
  const double e = r.act_bytes();
  LOOM_ASSIGN_OR_RETURN(Tensor x, r.Rand(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor w, r.Rand(Shape{c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor b, r.Rand(Shape{c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor out, r.Zeros(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor mean, r.Zeros(Shape{n}, r.stat));
  LOOM_ASSIGN_OR_RETURN(Tensor rstd, r.Zeros(Shape{n}, r.stat));
  const std::string shape = Dims(n, c);
  LOOM_RETURN_IF_ERROR(
      r.Time(Row(s, "layernorm fwd", shape, Bound::kMemory, 0, 2.0 * n * c * e + 8.0 * n),
             [&] { return ops::LayerNormForward(x, w, b, 1e-5f, out, mean, rstd); }));
  LOOM_ASSIGN_OR_RETURN(Tensor dx, r.Zeros(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor dw, r.Zeros(Shape{c}, r.stat));
  LOOM_ASSIGN_OR_RETURN(Tensor db, r.Zeros(Shape{c}, r.stat));
  LOOM_RETURN_IF_ERROR(
      r.Time(Row(s, "layernorm bwd", shape, Bound::kMemory, 0, 3.0 * n * c * e + 8.0 * n),
             [&] { return ops::LayerNormBackward(out, x, w, mean, rstd, dx, dw, db); }));
  LOOM_ASSIGN_OR_RETURN(Tensor a2, r.Rand(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor res, r.Zeros(Shape{n, c}, r.act));
  return r.Time(
      Row(s, "residual+layernorm fwd", shape, Bound::kMemory, 0, 4.0 * n * c * e + 8.0 * n),
      [&] { return ops::FusedResidualLayerNormForward(x, a2, w, b, 1e-5f, res, out, mean, rstd); });
}

absl::Status BenchRMSNorm(Runner& r, const BenchShape& s) {
  const int64_t n = s.batch * s.seq, c = s.channels;
  const double e = r.act_bytes();
  LOOM_ASSIGN_OR_RETURN(Tensor x, r.Rand(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor w, r.Rand(Shape{c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor out, r.Zeros(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor rstd, r.Zeros(Shape{n}, r.stat));
  const std::string shape = Dims(n, c);
  LOOM_RETURN_IF_ERROR(
      r.Time(Row(s, "rmsnorm fwd", shape, Bound::kMemory, 0, 2.0 * n * c * e + 4.0 * n),
             [&] { return ops::RMSNormForward(x, w, 1e-6f, out, rstd); }));
  LOOM_ASSIGN_OR_RETURN(Tensor dx, r.Zeros(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor dw, r.Zeros(Shape{c}, r.stat));
  return r.Time(Row(s, "rmsnorm bwd", shape, Bound::kMemory, 0, 3.0 * n * c * e + 4.0 * n),
                [&] { return ops::RMSNormBackward(out, x, w, rstd, dx, dw); });
}

// A linear layer [N, ic] -> [N, oc]: forward (optionally with the fused GeLU) and backward.
absl::Status BenchLinear(Runner& r, const BenchShape& s, const std::string& name, int64_t ic,
                         int64_t oc, bool bias, bool gelu) {
  const int64_t n = s.batch * s.seq;
  LOOM_ASSIGN_OR_RETURN(Tensor x, r.Rand(Shape{n, ic}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor w, r.Rand(Shape{oc, ic}, r.act, 0.02f));
  Tensor b;
  if (bias) {
    LOOM_ASSIGN_OR_RETURN(b, r.Rand(Shape{oc}, r.act, 0.02f));
  }
  LOOM_ASSIGN_OR_RETURN(Tensor out, r.Zeros(Shape{n, oc}, r.act));
  Tensor pre;
  if (gelu) {
    LOOM_ASSIGN_OR_RETURN(pre, r.Zeros(Shape{n, oc}, r.act));
  }
  const std::string shape = absl::StrCat(Dims(n, ic), " -> ", oc);
  const double flops = 2.0 * n * ic * oc;
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, name + " fwd", shape, Bound::kGemm, flops, 0), [&] {
    return ops::LinearForward(x, w, bias ? &b : nullptr, out, gelu ? &pre : nullptr);
  }));
  LOOM_ASSIGN_OR_RETURN(Tensor dx, r.Zeros(Shape{n, ic}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor dw, r.Zeros(Shape{oc, ic}, r.stat));
  Tensor db;
  if (bias) {
    LOOM_ASSIGN_OR_RETURN(db, r.Zeros(Shape{oc}, r.stat));
  }
  // `out` stands in for dout: same shape, realistic values, no extra memory for the LM head.
  return r.Time(Row(s, name + " bwd", shape, Bound::kGemm, 2 * flops, 0),
                [&] { return ops::LinearBackward(out, x, w, &dx, dw, bias ? &db : nullptr); });
}

absl::Status BenchRopeAndAttention(Runner& r, const BenchShape& s) {
  const int64_t n = s.batch * s.seq, nh = s.heads, nkv = s.kv_heads;
  const int64_t hd = s.channels / s.heads;
  const double e = r.act_bytes();
  LOOM_ASSIGN_OR_RETURN(Tensor qkv, r.Rand(Shape{s.batch, s.seq, (nh + 2 * nkv) * hd}, r.act));
  const std::string qkv_shape =
      absl::StrCat("B", s.batch, " T", s.seq, " H", nh, "/", nkv, " D", hd);
  // RoPE reads and writes the q and k parts in place.
  const double rope_bytes = 2.0 * n * (nh + nkv) * hd * e;
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "rope fwd", qkv_shape, Bound::kMemory, 0, rope_bytes),
                              [&] { return ops::RopeForward(qkv, nh, nkv, 10000.0f); }));
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "rope bwd", qkv_shape, Bound::kMemory, 0, rope_bytes),
                              [&] { return ops::RopeBackward(qkv, nh, nkv, 10000.0f); }));
  LOOM_ASSIGN_OR_RETURN(Tensor out, r.Zeros(Shape{s.batch, s.seq, nh * hd}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor lse, r.Zeros(Shape{s.batch, nh, s.seq}, r.stat));
  // Causal: QK^T and PV each 2*T*T*D/2 per head; backward recomputes S and does 4 more
  // products (dV, dP, dQ, dK): 2.5x the forward.
  const double fwd_flops = 2.0 * s.batch * nh * s.seq * s.seq * hd;
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "attention fwd", qkv_shape, Bound::kAttention, fwd_flops, 0),
                              [&] { return ops::AttentionForward(qkv, nh, nkv, out, lse); }));
  LOOM_ASSIGN_OR_RETURN(Tensor dqkv, r.Zeros(qkv.shape(), r.act));
  return r.Time(Row(s, "attention bwd", qkv_shape, Bound::kAttention, 2.5 * fwd_flops, 0),
                [&] { return ops::AttentionBackward(out, qkv, out, lse, nh, nkv, dqkv); });
}

absl::Status BenchActivations(Runner& r, const BenchShape& s) {
  const int64_t n = s.batch * s.seq, c = s.channels, h = 4 * s.channels;
  const double e = r.act_bytes();
  LOOM_ASSIGN_OR_RETURN(Tensor a, r.Rand(Shape{n, c}, r.act));
  LOOM_ASSIGN_OR_RETURN(Tensor b, r.Rand(Shape{n, c}, r.act));
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "add", Dims(n, c), Bound::kMemory, 0, 3.0 * n * c * e),
                              [&] { return ops::Add(a, b, a); }));
  LOOM_ASSIGN_OR_RETURN(Tensor x, r.Rand(Shape{n, h}, r.act, 3.0f));
  LOOM_ASSIGN_OR_RETURN(Tensor y, r.Zeros(Shape{n, h}, r.act));
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "gelu fwd", Dims(n, h), Bound::kMemory, 0, 2.0 * n * h * e),
                              [&] { return ops::GeluForward(x, y); }));
  LOOM_ASSIGN_OR_RETURN(Tensor dx, r.Zeros(Shape{n, h}, r.act));
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "gelu bwd", Dims(n, h), Bound::kMemory, 0, 3.0 * n * h * e),
                              [&] { return ops::GeluBackward(y, x, dx); }));
  // SwiGLU at the LLaMA-style width: [N, 2H] -> [N, H].
  LOOM_ASSIGN_OR_RETURN(Tensor inp, r.Rand(Shape{n, 2 * h}, r.act, 3.0f));
  const std::string shape = absl::StrCat(Dims(n, 2 * h), " -> ", h);
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "swiglu fwd", shape, Bound::kMemory, 0, 3.0 * n * h * e),
                              [&] { return ops::SwiGLUForward(inp, y); }));
  LOOM_ASSIGN_OR_RETURN(Tensor dinp, r.Zeros(Shape{n, 2 * h}, r.act));
  return r.Time(Row(s, "swiglu bwd", shape, Bound::kMemory, 0, 5.0 * n * h * e),
                [&] { return ops::SwiGLUBackward(y, inp, dinp); });
}

absl::Status BenchCrossEntropy(Runner& r, const BenchShape& s) {
  const int64_t n = s.batch * s.seq, v = s.vocab;
  const double e = r.act_bytes();
  LOOM_ASSIGN_OR_RETURN(Tensor logits, r.Rand(Shape{n, v}, r.act, 4.0f));
  LOOM_ASSIGN_OR_RETURN(Tensor targets, r.Ids(Shape{n}, v));
  LOOM_ASSIGN_OR_RETURN(Tensor losses, r.Zeros(Shape{n}, r.stat));
  // Fused loss + dlogits written over the logits (the training path): logits read once,
  // dlogits written once. Repeated calls see gradients as logits, which times the same.
  return r.Time(
      Row(s, "cross_entropy fwd+bwd", Dims(n, v), Bound::kMemory, 0, 2.0 * n * v * e + 8.0 * n),
      [&] { return ops::CrossEntropyForwardBackward(logits, targets, losses, &logits, 1.0f / n); });
}

absl::Status BenchOptimizer(Runner& r, const BenchShape& s) {
  const int64_t n = s.optimizer_params;
  // On the GPU: bf16 gradients in, a bf16 weight copy out, fp32 master weights and moments.
  const DType grad_dtype = r.act;
  LOOM_ASSIGN_OR_RETURN(Tensor params, r.Rand(Shape{n}, DType::kF32, 0.02f));
  LOOM_ASSIGN_OR_RETURN(Tensor grads, r.Rand(Shape{n}, grad_dtype, 0.01f));
  LOOM_ASSIGN_OR_RETURN(Tensor m, r.Zeros(Shape{n}, DType::kF32));
  LOOM_ASSIGN_OR_RETURN(Tensor v, r.Zeros(Shape{n}, DType::kF32));
  Tensor copy;
  if (r.cuda()) {
    LOOM_ASSIGN_OR_RETURN(copy, r.Zeros(Shape{n}, DType::kBF16));
  }
  const double g = DTypeSize(grad_dtype);
  const double bytes = n * (4.0 * 3 * 2 + g + (r.cuda() ? 2.0 : 0.0));
  ops::AdamWParams p;
  p.weight_decay = 0.1f;
  const std::string shape = absl::StrCat(n, " params");
  LOOM_RETURN_IF_ERROR(r.Time(Row(s, "adamw", shape, Bound::kMemory, 0, bytes), [&] {
    return ops::AdamWUpdate(params, grads, m, v, p, r.cuda() ? &copy : nullptr);
  }));
  LOOM_ASSIGN_OR_RETURN(Tensor acc, r.Zeros(Shape{1}, DType::kF32));
  return r.Time(Row(s, "sum_of_squares", shape, Bound::kMemory, 0, n * g),
                [&] { return ops::SumOfSquaresAccumulate(grads, acc); });
}

std::string FormatRate(double per_s, bool flops) {
  const char* unit = flops ? "FLOP/s" : "B/s";
  if (per_s >= 1e12) return absl::StrFormat("%.1f T%s", per_s / 1e12, unit);
  return absl::StrFormat("%.1f G%s", per_s / 1e9, unit);
}

}  // namespace

absl::StatusOr<std::vector<BenchShape>> ShapesNamed(const std::string& which) {
  // GPT-2 124M: 12 layers of 12 * 768^2 + 13 * 768 parameters, wte, wpe and the final norm.
  const int64_t c = 768;
  const int64_t block_params = 12 * c * c + 13 * c;
  const int64_t gpt2_params = 12 * block_params + 50257 * c + 1024 * c + 2 * c;
  const BenchShape tiny{"tiny", 2, 16, 64, 4, 4, 512, 100000};
  const BenchShape small{"small", 4, 64, c, 12, 12, 50257, block_params};
  const BenchShape gpt2{"gpt2", 8, 1024, c, 12, 12, 50257, gpt2_params};
  if (which == "tiny") return std::vector<BenchShape>{tiny};
  if (which == "small") return std::vector<BenchShape>{small};
  if (which == "gpt2") return std::vector<BenchShape>{gpt2};
  if (which == "all") return std::vector<BenchShape>{small, gpt2};
  return absl::InvalidArgumentError(
      absl::StrCat("--shapes: expected tiny, small, gpt2 or all, got '", which, "'"));
}

absl::StatusOr<std::vector<OpTiming>> RunOpBenchmarks(
    const BenchOptions& options, const Roofline& roofline,
    const std::function<void(const OpTiming&)>& on_row) {
  if (options.device == nullptr) return absl::InvalidArgumentError("bench: no device given");
  LOOM_ASSIGN_OR_RETURN(std::vector<BenchShape> shapes, ShapesNamed(options.shapes));
  std::vector<OpTiming> rows;
  Runner r(options, roofline, on_row, &rows);
  for (const BenchShape& s : shapes) {
    const int64_t c = s.channels, qkv = (s.heads + 2 * s.kv_heads) * (c / s.heads);
    // Each family frees its tensors on return; dropping the cache keeps the peak at the
    // largest family (the LM head and cross-entropy at gpt2 size) instead of the sum.
    const std::vector<std::pair<std::string, std::function<absl::Status()>>> families = {
        {"embedding", [&] { return BenchEmbedding(r, s); }},
        {"layernorm", [&] { return BenchLayerNorm(r, s); }},
        {"linear qkv", [&] { return BenchLinear(r, s, "linear qkv", c, qkv, true, false); }},
        {"rope attention", [&] { return BenchRopeAndAttention(r, s); }},
        {"linear attn_proj",
         [&] { return BenchLinear(r, s, "linear attn_proj", c, c, true, false); }},
        {"linear fc+gelu",
         [&] { return BenchLinear(r, s, "linear fc+gelu", c, 4 * c, true, true); }},
        {"activation add gelu swiglu", [&] { return BenchActivations(r, s); }},
        {"linear mlp_proj",
         [&] { return BenchLinear(r, s, "linear mlp_proj", 4 * c, c, true, false); }},
        {"rmsnorm", [&] { return BenchRMSNorm(r, s); }},
        {"linear lm_head", [&] { return BenchLinear(r, s, "lm_head", c, s.vocab, false, false); }},
        {"cross_entropy", [&] { return BenchCrossEntropy(r, s); }},
        {"optimizer adamw sum_of_squares", [&] { return BenchOptimizer(r, s); }},
    };
    for (const auto& entry : families) {
      // Not a structured binding: clang 14 (the sanitizer builds) cannot capture one.
      const std::string& name = entry.first;
      const bool wanted =
          options.ops.empty() ||
          std::any_of(options.ops.begin(), options.ops.end(),
                      [&](const std::string& w) { return name.find(w) != std::string::npos; });
      if (!wanted) continue;
      LOOM_RETURN_IF_ERROR(entry.second());
      options.device->allocator().EmptyCache();
    }
  }
  return rows;
}

std::string TableHeader() {
  return absl::StrFormat("%-6s %-24s %-28s %10s %16s %7s %7s  %s", "set", "op", "shape", "ms",
                         "rate", "roof", "target", "result");
}

std::string FormatRow(const OpTiming& row) {
  const bool by_flops = row.bound != Bound::kMemory;
  const double rate = (by_flops ? row.flops : row.bytes) / (row.ms * 1e-3);
  const std::string target = row.target > 0 ? absl::StrFormat(">=%.0f%%", 100 * row.target) : "-";
  const std::string result = row.target > 0 ? (row.pass ? "PASS" : "MISS") : "info";
  return absl::StrFormat("%-6s %-24s %-28s %10.3f %16s %6.1f%% %7s  %s", row.set, row.op, row.shape,
                         row.ms, FormatRate(rate, by_flops), 100 * row.fraction, target, result);
}

std::string Summary(const std::vector<OpTiming>& rows) {
  int pass = 0, miss = 0, info = 0;
  std::string missed;
  for (const auto& row : rows) {
    if (row.target == 0) {
      ++info;
    } else if (row.pass) {
      ++pass;
    } else {
      ++miss;
      absl::StrAppend(&missed, missed.empty() ? "" : ", ", row.set, ":", row.op);
    }
  }
  std::string out = absl::StrFormat("%d rows: %d PASS, %d MISS, %d without a target", rows.size(),
                                    pass, miss, info);
  if (!missed.empty()) absl::StrAppend(&out, "\nMISS: ", missed);
  return out;
}

}  // namespace loom::bench
