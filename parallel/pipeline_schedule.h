// Pipeline schedules as plain data. A schedule is a pure function of (pipeline stages p,
// micro-batches m, virtual stages v, stage index) returning that stage's ordered actions:
// Forward(mb, chunk), Backward(mb, chunk) and Exchange, a group of sends and receives of
// activations and their gradients that a runtime issues together as one batched isend/irecv and
// waits for as a whole. Nothing here communicates; the simulator (pipeline_simulator.h) runs all
// stages' lists together to prove they finish and to time them. docs/pipeline.md has the model.
//
// Promises, for every shape the builders accept (checked by tests/parallel/pipeline_schedule_test):
// - each (micro-batch, chunk) of a stage is run forward exactly once and backward exactly once,
//   the forward first (ZERO_BUBBLE: and its weight-gradient half W once, after the backward);
// - every send has exactly one matching receive on the neighbouring stage, and the receive of a
//   compute's input comes before that compute;
// - the pairing rule: the exchange between two consecutive computes of a stage holds the
//   outputs of the first (its sends) and the inputs of the second (its receives); issued that
//   way the stages cannot deadlock, even when a send completes only once its receive is posted;
// - between any two stages, the messages one sends the other (in list order, and in order within
//   an exchange) are received in that same order, so a transport that matches by order alone
//   (NCCL, or MPI with one tag) pairs them right. MessageTag gives a tag per message anyway.
//
// Chunk numbering follows Megatron and JobLayout::chunk_layers: model chunk c of stage s is
// virtual stage c * p + s in model order (chunk 0 on stages 0..p-1, then chunk 1, ...).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loom {

enum class PipelineScheduleKind {
  kGPipe,        // all forwards, then all backwards (GPipe); v must be 1
  kOneFOneB,     // PipeDream-flush / Megatron's non-interleaved 1F1B; v must be 1
  kInterleaved,  // Megatron's interleaved 1F1B over v >= 2 chunks per stage; m % p == 0
  kZeroBubble,   // ZB-H1 (Qi et al., ICLR 2024): 1F1B with each backward split into B and a
                 // deferred W; v must be 1
};

// "gpipe", "1f1b", "interleaved", "zero_bubble".
const char* PipelineScheduleName(PipelineScheduleKind kind);

struct PipelineShape {
  int stages = 1;          // p, pipeline-parallel ranks
  int micro_batches = 1;   // m, micro-batches per step on one data-parallel rank
  int virtual_stages = 1;  // v, model chunks per stage
  int virtual_total() const { return stages * virtual_stages; }
  // Global (model-order) index of chunk `chunk` of stage `stage`.
  int VirtualStage(int stage, int chunk) const { return chunk * stages + stage; }
};

enum class TransferKind { kSendActivation, kRecvActivation, kSendGrad, kRecvGrad };
const char* TransferKindName(TransferKind kind);  // "send_act", "recv_act", "send_grad", ...
inline bool IsSend(TransferKind k) {
  return k == TransferKind::kSendActivation || k == TransferKind::kSendGrad;
}
inline bool IsGrad(TransferKind k) {
  return k == TransferKind::kSendGrad || k == TransferKind::kRecvGrad;
}

// One point-to-point message as seen by one end. The message is identified by (activation or
// gradient, micro_batch, boundary): `boundary` b is the edge between virtual stages b and b + 1,
// which the activation crosses forwards and its gradient backwards. The other end holds the
// same triple with the opposite direction (a send there for a receive here); MessageTag turns
// the triple into a point-to-point tag.
struct Transfer {
  TransferKind kind;
  int peer = -1;  // the neighbouring stage at the other end
  int micro_batch = -1;
  int chunk = -1;       // this stage's chunk whose input (recv) or output (send) this is
  int peer_chunk = -1;  // the chunk at the other end
  int boundary = -1;    // virtual-stage edge crossed, 0 .. p*v - 2
  bool operator==(const Transfer&) const = default;
};

// A tag unique among the messages of one step: 2 * (boundary * m + micro_batch) + is_grad.
int MessageTag(const Transfer& t, const PipelineShape& shape);

// kBackward is the whole backward, except in a schedule that has kWeight actions (ZERO_BUBBLE):
// there kBackward is only its input-gradient half (B: what the previous stage waits for) and
// kWeight(mb, chunk) the weight-gradient half (W), which nobody waits for; a micro-batch's
// activations are held from its forward until its W.
enum class ActionKind { kForward, kBackward, kExchange, kWeight };

struct Action {
  ActionKind kind;
  int micro_batch = -1;             // Forward / Backward
  int chunk = -1;                   // Forward / Backward
  std::vector<Transfer> transfers;  // Exchange: issued together, completed together

  static Action Forward(int mb, int chunk) { return {ActionKind::kForward, mb, chunk, {}}; }
  static Action Backward(int mb, int chunk) { return {ActionKind::kBackward, mb, chunk, {}}; }
  static Action Weight(int mb, int chunk) { return {ActionKind::kWeight, mb, chunk, {}}; }
  bool operator==(const Action&) const = default;
};

// "F3" / "B3" / "W3" for v == 1, "F3.1" (micro-batch 3, chunk 1) otherwise; an exchange as
// "X[send_act mb3 c0->s1c0, recv_grad mb2 c0<-s1c0]".
std::string ActionName(const Action& a, const PipelineShape& shape);

// Checks p >= 1, m >= 1, v >= 1 and what `kind` needs (v == 1 for GPipe, 1F1B and zero bubble
// (ZB-V is not built); p >= 2,
// v >= 2 and m % p == 0 for interleaved), naming the numbers in the error.
absl::Status ValidatePipelineShape(PipelineScheduleKind kind, const PipelineShape& shape);

// The compute order alone (Forward/Backward/Weight actions, no exchanges) of `stage`.
absl::StatusOr<std::vector<Action>> PipelineComputeOrder(PipelineScheduleKind kind,
                                                         const PipelineShape& shape, int stage);

// The full action list of `stage`: the compute order with the exchanges of the pairing rule.
// A W has no inputs or outputs: it is a step of its own, so the exchange before it holds only
// the previous step's sends, and the next step's receives follow it.
absl::StatusOr<std::vector<Action>> BuildStageSchedule(PipelineScheduleKind kind,
                                                       const PipelineShape& shape, int stage);

// All stages' lists, index = stage.
using PipelineSchedule = std::vector<std::vector<Action>>;
absl::StatusOr<PipelineSchedule> BuildPipelineSchedule(PipelineScheduleKind kind,
                                                       const PipelineShape& shape);

// The action lists, one line per stage: "stage 0: F0 X[...] F1 ...". For debugging and tests;
// FormatTimeline (pipeline_simulator.h) shows them in time.
std::string FormatSchedule(const PipelineSchedule& schedule, const PipelineShape& shape,
                           bool show_exchanges = true);

}  // namespace loom
