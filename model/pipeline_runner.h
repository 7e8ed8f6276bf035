// PipelineRunner: runs this rank's pipeline stage of a GptModel through one training step by
// walking its action list from the schedule (parallel/pipeline_schedule.h): Forward(mb, chunk)
// and Backward(mb, chunk) call the model's chunk API; an Exchange posts all its sends and
// receives as one batched send/recv on the pipeline group and waits for them together, which is
// what keeps neighbouring stages from deadlocking (docs/pipeline.md, "the pairing rule").
//
// What goes out is copied into a send buffer right after the compute that produced it (the
// model's output views are only valid until its next chunk call, and the interleaved steady
// state runs a backward between a forward and the exchange that sends its output); received
// activations and gradients land directly in the model's slots. The last micro-batch's compute
// on each chunk is marked final, so gradient-ready hooks fire exactly once per parameter.
// A schedule with Weight actions (ZERO_BUBBLE) runs Backward as the model's input-gradient half
// (ChunkBackwardInput) and Weight as its weight-gradient half (ChunkBackwardWeight); the hooks
// then fire in the last micro-batch's W passes.
//
// ForwardOnly runs one micro-batch forward through the whole pipeline, one virtual stage after
// the other (validation, sampling): no schedule, no overlap, one transfer per boundary.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_schedule.h"

namespace loom {

class PipelineRunner {
 public:
  // `model` holds stage pp.rank() of pp.size(), with `shape.virtual_stages` chunks; both must
  // outlive the runner. Checks the schedule can be built and the model matches it.
  static absl::StatusOr<std::unique_ptr<PipelineRunner>> Create(GptModel* model, Communicator* pp,
                                                                PipelineScheduleKind kind,
                                                                const PipelineShape& shape);

  // One step over shape.micro_batches micro-batches: tokens[mb] and targets[mb] are i32 [B, T]
  // (read on the stages holding the embedding and the head, ignored elsewhere). Accumulates
  // loss_weight * the gradient of each micro-batch's mean loss. Returns the sum of the
  // micro-batches' mean losses on the stage holding the head, 0 elsewhere.
  absl::StatusOr<double> TrainStep(const std::vector<Tensor>& tokens,
                                   const std::vector<Tensor>& targets, float loss_weight);
  // One micro-batch forward through every stage in model order. kEval: returns the mean loss on
  // the head's stage (0 elsewhere); kLogits: the head's stage then has them in model->logits().
  // Sets the model's shape from `tokens` (or targets) when it differs.
  absl::StatusOr<float> ForwardOnly(const Tensor& tokens, const Tensor& targets,
                                    GptModel::HeadMode mode);

  // Seconds this rank spent since the last TakeTimes(), by kind, and what it sent.
  struct Times {
    double forward_s = 0, backward_s = 0, exchange_s = 0;
    double weight_s = 0;  // W actions (ZERO_BUBBLE); backward_s then holds only the B's
    int64_t bytes_sent = 0;
    int exchanges = 0;
  };
  Times TakeTimes() { return std::exchange(times_, Times{}); }
  const PipelineShape& shape() const { return shape_; }
  int stage() const { return stage_; }

 private:
  PipelineRunner() = default;
  absl::Status RunExchange(const Action& a);
  absl::StatusOr<Tensor> SendBuffer();

  GptModel* model_ = nullptr;
  Communicator* pp_ = nullptr;
  PipelineShape shape_;
  int stage_ = 0;
  std::vector<Action> actions_;
  bool split_backward_ = false;  // the schedule has W actions
  // Copies of outputs waiting for their exchange, keyed by (is_grad, micro-batch, chunk).
  struct Pending {
    bool grad;
    int mb, chunk;
    Tensor t;
  };
  std::vector<Pending> pending_;
  std::vector<Tensor> free_buffers_;
  int64_t buffer_rows_ = 0;  // the shape the buffers were made for
  Times times_;
};

}  // namespace loom
