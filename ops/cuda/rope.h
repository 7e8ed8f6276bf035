// CUDA rotary position embedding (ops/rope.h), in place on packed qkv, f32 or bf16, on the
// device's op stream. One block per token: its threads first compute cos/sin of that position
// (its own position: t, or its entry of a per-token position array) for the HD/2 frequencies (the
// angle recipe of ops/cpu/rope.h, trigonometry in double, so GPU and CPU angles agree to the last
// bit), then rotate every q and k head of the token.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace loom::ops::cuda {

// qkv: [B, T, (nh + 2*nkv) * hd], checked by ops/rope.cc. inverse: the backward rotation.
// positions: null (token t at pos_offset + t) or i32 [B, T] (token (b, t) at pos_offset +
// positions[b, t]).
absl::Status RopeApply(const Tensor& qkv, int nh, int nkv, int hd, float theta, int64_t pos_offset,
                       bool inverse, const Tensor* positions = nullptr);

}  // namespace loom::ops::cuda
