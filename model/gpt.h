// GptModel: a whole GPT-2 or LLaMA-style model on one device: parameters in one contiguous
// buffer, gradients in another with the same layout, and the activations one forward pass
// keeps for its backward pass (allocated for a (B, T) on first use and reused).
//
// ForwardBackward computes the mean cross-entropy over the micro-batch and, when asked, ADDS
// loss_weight * d(mean loss)/d(params) into the gradient buffer, so calling it once per
// micro-batch with loss_weight = 1 / micro_batches accumulates the gradient of the mean loss
// over the whole batch. Compute runs in the parameters' dtype (f32 on the CPU); norm
// statistics, log-sum-exps and losses are always f32.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gpt_config.h"
#include "model/param_layout.h"
#include "runtime/tensor.h"

namespace loom {

class GptModel {
 public:
  // dtype is the compute dtype of parameters, gradients and activations: f32, or bf16 (GPU;
  // the trainer then keeps fp32 master weights and casts into params() after each update).
  static absl::StatusOr<std::unique_ptr<GptModel>> Create(const GptConfig& config, Device* device,
                                                          DType dtype = DType::kF32);

  const GptConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  Device* device() const { return device_; }
  DType dtype() const { return dtype_; }
  const Tensor& params() const { return params_; }
  const Tensor& grads() const { return grads_; }
  // A view of one parameter (or its gradient) by spec.
  Tensor Param(const ParamSpec& s) const;
  Tensor Grad(const ParamSpec& s) const;
  absl::StatusOr<Tensor> ParamByName(const std::string& name) const;

  absl::Status ZeroGrads();

  // tokens, targets: i32 [B, T] (host or device). Returns the mean loss over the B*T rows.
  absl::StatusOr<float> ForwardBackward(const Tensor& tokens, const Tensor& targets,
                                        float loss_weight, bool backward = true);
  // Forward only, leaving the logits [B*T, padded_vocab] in the returned view (valid until the
  // next call).
  absl::StatusOr<Tensor> Forward(const Tensor& tokens);

 private:
  GptModel(const GptConfig& config, Device* device);
  struct LayerActs {
    Tensor norm1, mean1, rstd1, qkv, atty, lse, res2, norm2, mean2, rstd2, fc, act, res3;
  };
  absl::Status EnsureActivations(int64_t B, int64_t T);
  absl::Status RunForward(const Tensor& tokens);
  absl::Status RunBackward(const Tensor& tokens);
  Tensor P(const std::string& name) const;
  Tensor G(const std::string& name) const;
  absl::StatusOr<Tensor> Scratch(const Shape& shape, DType dtype);

  GptConfig config_;
  ParamLayout layout_;
  Device* device_;
  DType dtype_ = DType::kF32;
  Tensor params_, grads_;
  std::vector<const ParamSpec*> by_index_;

  int64_t B_ = 0, T_ = 0;
  Tensor tokens_dev_, targets_dev_;
  Tensor emb_;  // [N, C] block 0 input
  std::vector<LayerActs> acts_;
  Tensor proj_;  // forward scratch: output of a projection before its residual add
  Tensor normf_, meanf_, rstdf_, logits_, losses_;
  // Backward scratch.
  Tensor d_res_, d_tmp_, d_norm_, d_qkv_, d_atty_, d_fc_, d_act_;
};

}  // namespace loom
