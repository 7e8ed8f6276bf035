// Generator: autoregressive decoding with a KV cache on a whole GptModel's weights (one rank, or
// each rank of a tensor group holding its slices: the group runs every step together).
//
// Each layer keeps a cache of its packed qkv rows for positions 0..position()-1 (q is kept too:
// the rows come out of one GEMM whole, and the waste is NH / (NH + 2 NKV) of the cache). Append
// runs only the new tokens through the model: embedding (positions from position()), per layer
// norm, QKV projection, RoPE at the right positions, the new rows written to the cache,
// attention of the new tokens over the cached keys (ops/decode_attention.h), output projection
// and MLP (row-parallel outputs all-reduced over the tensor group, their biases added once), and
// the head's logits of the last new token only. Its results equal the full forward pass over
// the whole sequence (GptModel::Forward) up to the order of floating-point sums; generate_test
// checks both the logits and the greedy tokens.
//
// The same code runs on every device (the ops dispatch by where the tensors live).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/gpt.h"
#include "parallel/communicator.h"
#include "runtime/tensor.h"

namespace loom {

class Generator {
 public:
  // `model` must hold the whole model (one stage) and outlive the generator; `tp` is the
  // tensor group it was built with (null or size 1: none). max_len: the longest sequence
  // (prompt and new tokens), at most the model's max_seq.
  static absl::StatusOr<std::unique_ptr<Generator>> Create(GptModel* model, Communicator* tp,
                                                           int64_t max_len);

  // Runs `tokens` at positions position() .. position() + n - 1 and returns the logits of the
  // last one: [1, padded_vocab / tp] in the model's dtype, valid until the next call. Refuses
  // to go past max_len, naming it.
  absl::StatusOr<Tensor> Append(absl::Span<const int32_t> tokens);
  int64_t position() const { return pos_; }
  int64_t max_len() const { return max_len_; }
  // Forgets the sequence (the cache is overwritten from position 0).
  void Reset() { pos_ = 0; }

 private:
  Generator() = default;
  absl::StatusOr<Tensor> P(const std::string& name) const { return model_->ParamByName(name); }
  absl::Status AllReduce(const Tensor& t);
  absl::Status Layer(int l, int64_t n);
  Tensor Rows(const Tensor& t, int64_t n) const;

  GptModel* model_ = nullptr;
  Communicator* tp_ = nullptr;
  int64_t max_len_ = 0, pos_ = 0;
  int heads_ = 0, kv_heads_ = 0, hd_ = 0;
  int64_t qkv_width_ = 0, vocab_start_ = 0;
  std::vector<Tensor> cache_;  // per layer [max_len, qkv_width]
  // Scratch for up to max_len rows: the residual stream, norms, attention, MLP.
  Tensor x_, res2_, norm_, mean_, rstd_, atty_, proj_, fc_, act_, tokens_, logits_;
};

}  // namespace loom
