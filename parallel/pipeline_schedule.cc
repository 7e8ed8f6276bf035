#include "parallel/pipeline_schedule.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace loom {

const char* PipelineScheduleName(PipelineScheduleKind kind) {
  switch (kind) {
    case PipelineScheduleKind::kGPipe:
      return "gpipe";
    case PipelineScheduleKind::kOneFOneB:
      return "1f1b";
    case PipelineScheduleKind::kInterleaved:
      return "interleaved";
    case PipelineScheduleKind::kZeroBubble:
      return "zero_bubble";
  }
  return "?";
}


const char* TransferKindName(TransferKind kind) {
  switch (kind) {
    case TransferKind::kSendActivation:
      return "send_act";
    case TransferKind::kRecvActivation:
      return "recv_act";
    case TransferKind::kSendGrad:
      return "send_grad";
    case TransferKind::kRecvGrad:
      return "recv_grad";
  }
  return "?";
}

int MessageTag(const Transfer& t, const PipelineShape& shape) {
  return 2 * (t.boundary * shape.micro_batches + t.micro_batch) + (IsGrad(t.kind) ? 1 : 0);
}

namespace {

std::string MbName(int mb, int chunk, const PipelineShape& shape) {
  return shape.virtual_stages == 1 ? absl::StrCat(mb) : absl::StrCat(mb, ".", chunk);
}

}  // namespace

std::string ActionName(const Action& a, const PipelineShape& shape) {
  switch (a.kind) {
    case ActionKind::kForward:
      return absl::StrCat("F", MbName(a.micro_batch, a.chunk, shape));
    case ActionKind::kBackward:
      return absl::StrCat("B", MbName(a.micro_batch, a.chunk, shape));
    case ActionKind::kWeight:
      return absl::StrCat("W", MbName(a.micro_batch, a.chunk, shape));
    case ActionKind::kExchange: {
      std::vector<std::string> parts;
      for (const Transfer& t : a.transfers) {
        parts.push_back(absl::StrCat(IsSend(t.kind) ? "send " : "recv ", IsGrad(t.kind) ? "g" : "a",
                                     MbName(t.micro_batch, t.chunk, shape),
                                     IsSend(t.kind) ? " to s" : " from s", t.peer));
      }
      return absl::StrCat("X[", absl::StrJoin(parts, ", "), "]");
    }
  }
  return "?";
}

absl::Status ValidatePipelineShape(PipelineScheduleKind kind, const PipelineShape& shape) {
  const char* name = PipelineScheduleName(kind);
  if (shape.stages < 1 || shape.micro_batches < 1 || shape.virtual_stages < 1) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline schedule ", name, ": stages (",
                                                   shape.stages, "), micro-batches (",
                                                   shape.micro_batches, ") and virtual stages (",
                                                   shape.virtual_stages, ") must each be >= 1"));
  }
  if (kind == PipelineScheduleKind::kInterleaved) {
    if (shape.stages < 2 || shape.virtual_stages < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pipeline schedule interleaved needs stages >= 2 and virtual stages >= 2 (got stages ",
          shape.stages, ", virtual stages ", shape.virtual_stages, ")"));
    }
    if (shape.micro_batches % shape.stages != 0) {
      // Megatron's interleaved schedule walks the micro-batches in groups of p per chunk.
      return absl::InvalidArgumentError(absl::StrCat(
          "pipeline schedule interleaved needs the micro-batches (", shape.micro_batches,
          ") to be a multiple of the stages (", shape.stages, ")"));
    }
  } else if (shape.virtual_stages != 1 && kind == PipelineScheduleKind::kZeroBubble) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline schedule zero_bubble is ZB-H1, with one model chunk per stage: virtual stages "
        "must be 1 (got ",
        shape.virtual_stages, "); the interleaved zero-bubble variant (ZB-V) is not built"));
  } else if (shape.virtual_stages != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline schedule ", name, " needs virtual stages 1 (got ",
                     shape.virtual_stages, "); use the interleaved schedule"));
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckStage(const PipelineShape& shape, int stage) {
  if (stage < 0 || stage >= shape.stages) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline stage index ", stage, " is outside 0..", shape.stages - 1));
  }
  return absl::OkStatus();
}

// Megatron's interleaved unit numbering: the k-th forward (or backward) of a stage walks the
// micro-batches in groups of p, chunk by chunk (backwards: last chunk first).
Action InterleavedUnit(const PipelineShape& shape, int k, bool forward) {
  const int p = shape.stages, v = shape.virtual_stages;
  const int group = k / (p * v), in_group = k % (p * v);
  int chunk = in_group / p;
  if (!forward) chunk = v - 1 - chunk;
  const int mb = group * p + in_group % p;
  return forward ? Action::Forward(mb, chunk) : Action::Backward(mb, chunk);
}

// The neighbour's end of the edge into (stage, chunk) (`before`) or out of it.
void Neighbour(const PipelineShape& shape, int stage, int chunk, bool before, int* peer,
               int* peer_chunk) {
  const int p = shape.stages;
  if (before) {
    *peer = (stage - 1 + p) % p;
    *peer_chunk = stage == 0 ? chunk - 1 : chunk;
  } else {
    *peer = (stage + 1) % p;
    *peer_chunk = stage == p - 1 ? chunk + 1 : chunk;
  }
}

Transfer MakeTransfer(const PipelineShape& shape, int stage, TransferKind kind, int mb, int chunk) {
  // Receiving an activation and sending a gradient use the edge before this chunk; the other
  // two use the edge after it.
  const bool before = kind == TransferKind::kRecvActivation || kind == TransferKind::kSendGrad;
  Transfer t{kind};
  t.micro_batch = mb;
  t.chunk = chunk;
  Neighbour(shape, stage, chunk, before, &t.peer, &t.peer_chunk);
  const int k = shape.VirtualStage(stage, chunk);
  t.boundary = before ? k - 1 : k;
  return t;
}

// What a compute needs from a neighbour before it runs.
void AppendInputs(const PipelineShape& shape, int stage, const Action& a,
                  std::vector<Transfer>* out) {
  const int k = shape.VirtualStage(stage, a.chunk), last = shape.virtual_total() - 1;
  if (a.kind == ActionKind::kForward && k > 0) {
    out->push_back(
        MakeTransfer(shape, stage, TransferKind::kRecvActivation, a.micro_batch, a.chunk));
  } else if (a.kind == ActionKind::kBackward && k < last) {
    out->push_back(MakeTransfer(shape, stage, TransferKind::kRecvGrad, a.micro_batch, a.chunk));
  }
}

// What a compute hands to a neighbour after it ran.
void AppendOutputs(const PipelineShape& shape, int stage, const Action& a,
                   std::vector<Transfer>* out) {
  const int k = shape.VirtualStage(stage, a.chunk), last = shape.virtual_total() - 1;
  if (a.kind == ActionKind::kForward && k < last) {
    out->push_back(
        MakeTransfer(shape, stage, TransferKind::kSendActivation, a.micro_batch, a.chunk));
  } else if (a.kind == ActionKind::kBackward && k > 0) {
    out->push_back(MakeTransfer(shape, stage, TransferKind::kSendGrad, a.micro_batch, a.chunk));
  }
}

}  // namespace

namespace {

// The computes of a stage grouped into steps: the runs of computes between two exchanges.
using Steps = std::vector<std::vector<Action>>;

absl::StatusOr<Steps> ComputeSteps(PipelineScheduleKind kind, const PipelineShape& shape,
                                   int stage) {
  LOOM_RETURN_IF_ERROR(ValidatePipelineShape(kind, shape));
  LOOM_RETURN_IF_ERROR(CheckStage(shape, stage));
  const int p = shape.stages, m = shape.micro_batches;
  Steps steps;
  switch (kind) {
    case PipelineScheduleKind::kGPipe:
      for (int mb = 0; mb < m; ++mb) steps.push_back({Action::Forward(mb, 0)});
      for (int mb = 0; mb < m; ++mb) steps.push_back({Action::Backward(mb, 0)});
      break;
    case PipelineScheduleKind::kOneFOneB: {
      // Warm up with as many forwards as stages after this one, so that the first backward
      // arrives just as the warm-up ends; then alternate; then drain the backwards. Every
      // compute is its own step (Megatron's send_forward_recv_backward and
      // send_backward_recv_forward between them).
      const int warmup = std::min(p - stage - 1, m);
      for (int mb = 0; mb < warmup; ++mb) steps.push_back({Action::Forward(mb, 0)});
      for (int i = 0; i < m - warmup; ++i) {
        steps.push_back({Action::Forward(warmup + i, 0)});
        steps.push_back({Action::Backward(i, 0)});
      }
      for (int mb = m - warmup; mb < m; ++mb) steps.push_back({Action::Backward(mb, 0)});
      break;
    }
    case PipelineScheduleKind::kZeroBubble: {
      // ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): 1F1B's forwards and
      // input-gradient backwards B in 1F1B's order, so the gradient reaches stage 0 after p
      // B's instead of p full backwards; each W is put off until a forward would otherwise
      // hold more micro-batches than `limit` = min(p, m), 1F1B's peak (stage 0's), which lets
      // the later stages, whose 1F1B holds fewer, run several B's back to back and fill their
      // warm-up and cool-down gaps with W's. In the cool-down one W goes before each B (the
      // gap while that B's gradient travels), the rest at the end. With t_F = t_B = t_W and
      // m >= p every stage idles (p - 1) t_B (the paper's (p-1)(t_F + t_B - t_W)): a third of
      // 1F1B's 3 (p - 1) t_B.
      const int limit = std::min(p, m);
      const int warmup = std::min(p - stage - 1, m);
      int f = 0, b = 0, w = 0;
      for (; f < warmup; ++f) steps.push_back({Action::Forward(f, 0)});
      while (f < m) {
        for (; f - w >= limit; ++w) steps.push_back({Action::Weight(w, 0)});
        steps.push_back({Action::Forward(f++, 0)});
        steps.push_back({Action::Backward(b++, 0)});
      }
      while (b < m) {
        if (w < b) steps.push_back({Action::Weight(w++, 0)});
        steps.push_back({Action::Backward(b++, 0)});
      }
      for (; w < m; ++w) steps.push_back({Action::Weight(w, 0)});
      break;
    }
    case PipelineScheduleKind::kInterleaved: {
      // Megatron: warm-up covers the first chunk's p micro-batches on every later stage twice
      // over (there and back) plus a full round of the other chunks. In the steady state a
      // forward and a backward form one step, so one exchange carries both their outputs and
      // both inputs of the next step (send_forward_backward_recv_forward_backward): with the
      // wrap-around from the last stage to the first, finer exchanges can wait on each other
      // in a ring when sends complete only once received.
      const int total = m * shape.virtual_stages;
      const int warmup = std::min((p - stage - 1) * 2 + (shape.virtual_stages - 1) * p, total);
      for (int k = 0; k < warmup; ++k) steps.push_back({InterleavedUnit(shape, k, true)});
      for (int k = 0; k < total - warmup; ++k) {
        steps.push_back(
            {InterleavedUnit(shape, warmup + k, true), InterleavedUnit(shape, k, false)});
      }
      for (int k = total - warmup; k < total; ++k) {
        steps.push_back({InterleavedUnit(shape, k, false)});
      }
      break;
    }
  }
  return steps;
}

}  // namespace

absl::StatusOr<std::vector<Action>> PipelineComputeOrder(PipelineScheduleKind kind,
                                                         const PipelineShape& shape, int stage) {
  LOOM_ASSIGN_OR_RETURN(Steps steps, ComputeSteps(kind, shape, stage));
  std::vector<Action> order;
  for (const auto& step : steps) order.insert(order.end(), step.begin(), step.end());
  return order;
}

absl::StatusOr<std::vector<Action>> BuildStageSchedule(PipelineScheduleKind kind,
                                                       const PipelineShape& shape, int stage) {
  LOOM_ASSIGN_OR_RETURN(Steps steps, ComputeSteps(kind, shape, stage));
  // The pairing rule: between steps j and j+1 one exchange with j's sends and j+1's receives.
  // A stage that has sent its results and needs its next inputs does both in one batched call,
  // as Megatron's send_forward_recv_backward does.
  std::vector<Action> actions;
  std::vector<Transfer> pending;
  auto flush = [&actions, &pending]() {
    if (pending.empty()) return;
    actions.push_back(Action{ActionKind::kExchange, -1, -1, std::move(pending)});
    pending.clear();
  };
  // Whether a forward after step `from` receives an activation.
  auto inputs_follow = [&](const std::vector<Action>* from) {
    std::vector<Transfer> inputs;
    for (const std::vector<Action>* st = from + 1; st < steps.data() + steps.size(); ++st) {
      for (const Action& a : *st) {
        if (a.kind == ActionKind::kForward) AppendInputs(shape, stage, a, &inputs);
      }
      if (!inputs.empty()) return true;
    }
    return false;
  };
  for (const auto& step : steps) {
    // A step of W's only has no inputs and no outputs: it runs before the pending exchange,
    // whose sends (the previous B's gradient) then pair with the next step's receives as in
    // 1F1B. As a step of its own it would stand between them and make the B's send wait
    // alone for its receiver, which under rendezvous sends stalls the stage (the simulator
    // shows it).
    const bool weight_only = std::all_of(
        step.begin(), step.end(), [](const Action& a) { return a.kind == ActionKind::kWeight; });
    if (weight_only) {
      // In the cool-down (no forward receives after this), the B's sends go out before the
      // W's, which then fill the wait for the next gradient instead of delaying this one.
      if (!inputs_follow(&step)) flush();
      actions.insert(actions.end(), step.begin(), step.end());
      continue;
    }
    for (const Action& a : step) AppendInputs(shape, stage, a, &pending);
    flush();
    actions.insert(actions.end(), step.begin(), step.end());
    for (const Action& a : step) AppendOutputs(shape, stage, a, &pending);
  }
  flush();
  return actions;
}

absl::StatusOr<PipelineSchedule> BuildPipelineSchedule(PipelineScheduleKind kind,
                                                       const PipelineShape& shape) {
  LOOM_RETURN_IF_ERROR(ValidatePipelineShape(kind, shape));
  PipelineSchedule schedule;
  for (int s = 0; s < shape.stages; ++s) {
    LOOM_ASSIGN_OR_RETURN(std::vector<Action> actions, BuildStageSchedule(kind, shape, s));
    schedule.push_back(std::move(actions));
  }
  return schedule;
}

std::string FormatSchedule(const PipelineSchedule& schedule, const PipelineShape& shape,
                           bool show_exchanges) {
  std::string out;
  for (size_t s = 0; s < schedule.size(); ++s) {
    std::vector<std::string> names;
    for (const Action& a : schedule[s]) {
      if (a.kind == ActionKind::kExchange && !show_exchanges) continue;
      names.push_back(ActionName(a, shape));
    }
    absl::StrAppend(&out, "stage ", s, ": ", absl::StrJoin(names, " "), "\n");
  }
  return out;
}

}  // namespace loom
