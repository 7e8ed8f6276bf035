#include "model/pipeline_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"
#include "runtime/timer.h"

namespace loom {

absl::StatusOr<std::unique_ptr<PipelineRunner>> PipelineRunner::Create(
    GptModel* model, Communicator* pp, PipelineScheduleKind kind, const PipelineShape& shape) {
  if (model == nullptr || pp == nullptr) {
    return absl::InvalidArgumentError("PipelineRunner needs a model and a pipeline group");
  }
  if (pp->size() != shape.stages) {
    return absl::InvalidArgumentError(absl::StrCat("the pipeline group has ", pp->size(),
                                                   " ranks but the schedule has ", shape.stages,
                                                   " stages"));
  }
  if (model->num_chunks() != shape.virtual_stages) {
    return absl::InvalidArgumentError(absl::StrCat("the model stage holds ", model->num_chunks(),
                                                   " chunk(s) but the schedule has ",
                                                   shape.virtual_stages, " virtual stage(s)"));
  }
  std::unique_ptr<PipelineRunner> r(new PipelineRunner());
  r->model_ = model;
  r->pp_ = pp;
  r->shape_ = shape;
  r->stage_ = pp->rank();
  LOOM_ASSIGN_OR_RETURN(r->actions_, BuildStageSchedule(kind, shape, r->stage_));
  // A schedule with W actions runs each backward as B then a deferred W: the model's slots then
  // keep what W needs (model/gpt.h, the backward split).
  r->split_backward_ = std::any_of(r->actions_.begin(), r->actions_.end(),
                                   [](const Action& a) { return a.kind == ActionKind::kWeight; });
  if (r->split_backward_ != model->split_backward()) {
    LOOM_RETURN_IF_ERROR(model->set_split_backward(r->split_backward_));
  }
  return r;
}

absl::StatusOr<Tensor> PipelineRunner::SendBuffer() {
  const int64_t rows = model_->activation_rows();
  if (rows != buffer_rows_) {
    free_buffers_.clear();
    buffer_rows_ = rows;
  }
  if (!free_buffers_.empty()) {
    Tensor t = std::move(free_buffers_.back());
    free_buffers_.pop_back();
    return t;
  }
  return Tensor::Empty(Shape{rows, model_->config().hidden}, model_->dtype(), model_->device());
}

absl::Status PipelineRunner::RunExchange(const Action& a) {
  std::vector<P2POp> ops;
  std::vector<size_t> sent;  // indices into pending_ of what this exchange sends
  ops.reserve(a.transfers.size());
  for (const Transfer& t : a.transfers) {
    switch (t.kind) {
      case TransferKind::kRecvActivation: {
        LOOM_ASSIGN_OR_RETURN(Tensor in, model_->ChunkInput(t.chunk, t.micro_batch));
        ops.push_back({P2POp::kRecv, in, t.peer});
        break;
      }
      case TransferKind::kRecvGrad: {
        LOOM_ASSIGN_OR_RETURN(Tensor g, model_->ChunkOutputGrad(t.chunk, t.micro_batch));
        ops.push_back({P2POp::kRecv, g, t.peer});
        break;
      }
      case TransferKind::kSendActivation:
      case TransferKind::kSendGrad: {
        const bool grad = t.kind == TransferKind::kSendGrad;
        size_t i = 0;
        while (i < pending_.size() && !(pending_[i].grad == grad &&
                                        pending_[i].mb == t.micro_batch &&
                                        pending_[i].chunk == t.chunk)) {
          ++i;
        }
        if (i == pending_.size()) {
          return absl::InternalError(absl::StrCat(
              "pipeline stage ", stage_, ": ", TransferKindName(t.kind), " of micro-batch ",
              t.micro_batch, " chunk ", t.chunk, " before the compute that produces it"));
        }
        ops.push_back({P2POp::kSend, pending_[i].t, t.peer});
        times_.bytes_sent += static_cast<int64_t>(pending_[i].t.nbytes());
        sent.push_back(i);
        break;
      }
    }
  }
  Timer timer;
  LOOM_RETURN_IF_ERROR(pp_->BatchSendRecv(ops));
  times_.exchange_s += timer.Seconds();
  ++times_.exchanges;
  // Give the send buffers back (highest index first so the others stay valid).
  std::sort(sent.rbegin(), sent.rend());
  for (size_t i : sent) {
    free_buffers_.push_back(std::move(pending_[i].t));
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> PipelineRunner::TrainStep(const std::vector<Tensor>& tokens,
                                                 const std::vector<Tensor>& targets,
                                                 float loss_weight) {
  const int m = shape_.micro_batches;
  if (static_cast<int>(tokens.size()) != m || static_cast<int>(targets.size()) != m) {
    return absl::InvalidArgumentError(absl::StrCat("the pipeline step needs ", m,
                                                   " micro-batches of tokens and targets, got ",
                                                   tokens.size(), " and ", targets.size()));
  }
  LOOM_RETURN_IF_ERROR(model_->SetShape(tokens[0].dim(0), tokens[0].dim(1)));
  pending_.clear();
  double loss_sum = 0;
  for (const Action& a : actions_) {
    switch (a.kind) {
      case ActionKind::kForward: {
        const int mb = a.micro_batch, c = a.chunk;
        // The head's backward runs inside its forward: final on the last micro-batch.
        model_->set_final_backward(mb == m - 1);
        Timer timer;
        LOOM_ASSIGN_OR_RETURN(float loss, model_->ChunkForward(c, mb, &tokens[mb], &targets[mb],
                                                               loss_weight));
        times_.forward_s += timer.Seconds();
        if (model_->ChunkHasHead(c)) {
          loss_sum += loss;
        } else {
          LOOM_ASSIGN_OR_RETURN(Tensor buf, SendBuffer());
          LOOM_RETURN_IF_ERROR(buf.CopyFrom(model_->ChunkOutput()));
          pending_.push_back({false, mb, c, std::move(buf)});
        }
        break;
      }
      case ActionKind::kBackward: {
        const int mb = a.micro_batch, c = a.chunk;
        model_->set_final_backward(mb == m - 1);
        Timer timer;
        // Split: only the input gradient (B); the parameters' gradients wait for the W action.
        LOOM_RETURN_IF_ERROR(split_backward_ ? model_->ChunkBackwardInput(c, mb)
                                             : model_->ChunkBackward(c, mb));
        times_.backward_s += timer.Seconds();
        if (!model_->ChunkHasEmbedding(c)) {
          LOOM_ASSIGN_OR_RETURN(Tensor buf, SendBuffer());
          LOOM_RETURN_IF_ERROR(buf.CopyFrom(model_->ChunkInputGrad()));
          pending_.push_back({true, mb, c, std::move(buf)});
        }
        break;
      }
      case ActionKind::kWeight: {
        const int mb = a.micro_batch;
        // The last micro-batch's W completes each parameter's gradient: its hooks fire there,
        // so the data-parallel buckets launch as the W passes finish.
        model_->set_final_backward(mb == m - 1);
        Timer timer;
        LOOM_RETURN_IF_ERROR(model_->ChunkBackwardWeight(a.chunk, mb));
        times_.weight_s += timer.Seconds();
        break;
      }
      case ActionKind::kExchange:
        LOOM_RETURN_IF_ERROR(RunExchange(a));
        break;
    }
  }
  model_->set_final_backward(true);
  if (!pending_.empty()) {
    return absl::InternalError(absl::StrCat("pipeline stage ", stage_, ": ", pending_.size(),
                                            " output(s) computed but never sent"));
  }
  return loss_sum;
}

absl::StatusOr<float> PipelineRunner::ForwardOnly(const Tensor& tokens, const Tensor& targets,
                                                  GptModel::HeadMode mode) {
  LOOM_RETURN_IF_ERROR(model_->SetShape(tokens.dim(0), tokens.dim(1)));
  const int p = shape_.stages, total = shape_.virtual_total();
  float loss = 0;
  for (int k = 0; k < total; ++k) {
    if (k % p != stage_) continue;
    const int chunk = k / p;
    if (k > 0) {
      LOOM_ASSIGN_OR_RETURN(Tensor in, model_->ChunkInput(chunk, 0));
      P2POp op{P2POp::kRecv, in, (k - 1) % p};
      Timer timer;
      LOOM_RETURN_IF_ERROR(pp_->BatchSendRecv(absl::MakeSpan(&op, 1)));
      times_.exchange_s += timer.Seconds();
    }
    Timer timer;
    LOOM_ASSIGN_OR_RETURN(float l, model_->ChunkForward(chunk, 0, &tokens, &targets, 1.0f, mode));
    times_.forward_s += timer.Seconds();
    if (model_->ChunkHasHead(chunk)) loss = l;
    if (k < total - 1) {
      P2POp op{P2POp::kSend, model_->ChunkOutput(), (k + 1) % p};
      Timer t2;
      LOOM_RETURN_IF_ERROR(pp_->BatchSendRecv(absl::MakeSpan(&op, 1)));
      times_.exchange_s += t2.Seconds();
    }
  }
  return loss;
}

}  // namespace loom
