// The memory one rank of a training job needs, by kind, from the job config and a layout
// (dp, tp, pp, virtual stages): one formula, used by `loom config check` and `loom train` to
// refuse a job that cannot fit before anything is allocated, and by the layout planner to rank
// layouts.
//
// Bytes per parameter held by the rank:
//   FP32 (the CPU backend): 4 weights + 4 gradients + 8 AdamW moments (m, v); the weights are
//     the master copy.
//   BF16 (GPU): 2 weights + 4 fp32 gradients + 4 fp32 master weights + 8 fp32 moments.
//   With parallel.distributed_optimizer the master weights and moments are split over dp.
// Parameters held, as Megatron shards them: the column-parallel (QKV, MLP up/gate) and
// row-parallel (attention and MLP output) weight matrices and the column-parallel biases 1/tp;
// norm weights and row-parallel biases replicated; embedding and untied LM head vocab-parallel
// (padded vocab / tp rows); GPT-2's position table replicated. Pipeline stage s holds its
// chunks' layers; the first stage also the embedding, the last the final norm and the head
// (with tied embeddings and pp > 1 the last stage keeps its own copy of the embedding, as
// Megatron does). The figure is that of the stage needing the most.
// Activations: exactly the buffers GptModel::EnsureActivations (model/gpt.cc) allocates for a
// micro-batch of parallel.micro_batch_size x data.seq_len tokens: per layer the norm outputs
// and statistics, QKV, attention output and log-sum-exps, residuals, MLP pre-activation and
// activation; once per model the embedding output, the projection scratch, the final norm, the
// logits (padded vocab wide), the losses, the token ids and the backward scratch. Activations
// inside attention and the MLP (QKV, attention output, log-sum-exps, MLP activations, logits)
// are 1/tp; with parallel.sequence_parallel the rest (norm outputs and statistics, residuals,
// the embedding output) are 1/tp too. A pipeline stage keeps the per-layer activations of the
// micro-batches in flight: stage s of 1F1B holds min(pp - s, micro-batches per step) of them
// (stage 0 the most); interleaving multiplies the first stage's by 1 + (pp - 1) / (pp * vs),
// Megatron's figure. Compute dtype: 4 bytes (FP32) or 2 (BF16); statistics, log-sum-exps and
// losses are fp32, token ids int32.
// Not counted: allocator rounding (512 bytes a tensor), communication buffers, the CUDA context
// and library workspaces, the process's own code and heap (callers keep a reserve for those,
// see launcher/job_check.h), and the token shards (memory-mapped files, which the kernel can
// page out).
#pragma once

#include <cstdint>
#include <string>

#include "proto/job.pb.h"
#include "model/gpt.h"

namespace loom {

// Activation recomputation is the model's own choice (Recompute, model/gpt.h), priced here as the
// model allocates it: kSelective keeps every layer's activations but the MLP activation, held
// once and rebuilt in backward; kFull keeps only each layer's input per micro-batch in flight
// and holds one layer's activations once, rebuilt before that layer's backward.

struct LayoutDegrees {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  int virtual_stages = 1;
  Recompute recompute = Recompute::kNone;
};

struct MemoryEstimate {
  int64_t parameters = 0;         // parameters held by the rank (padded vocab rows included)
  int64_t weights = 0;            // bytes of the compute-dtype weights
  int64_t gradients = 0;          // bytes
  int64_t master_weights = 0;     // fp32 copy for BF16 (0 for FP32, where weights are the master)
  int64_t optimizer_moments = 0;  // AdamW m and v
  int64_t activations = 0;        // at parallel.micro_batch_size, micro-batches in flight included
  int64_t total = 0;
  int stage = 0;  // the pipeline stage the figures are for (the largest)
  int64_t micro_batches_in_flight = 1;
};

// The estimate for the rank that needs the most. `config` has its defaults applied and is valid
// for the layout (launcher/config.h ValidateJobConfig); sizes beyond int64 saturate.
MemoryEstimate EstimateMemoryPerRank(const JobConfig& config, const LayoutDegrees& layout);

// "weights 12 MiB + gradients 12 MiB + ... = 49 MiB", each line starting with `prefix`.
std::string FormatMemoryEstimate(const MemoryEstimate& m, const std::string& prefix);

}  // namespace loom
