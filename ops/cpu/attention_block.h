// CPU kernels of ops/attention_block.h (ring attention's block step), float, on the packed qkv
// layout. Work is split as in ops/cpu/attention.h: forward over (batch, head, block of 64
// query rows), backward over (batch, kv head) so each kv head's dK/dV has one writer. Each task
// multiplies only the visible prefix of the key block (positions increase with the row).
#pragma once

#include <cstdint>

#include "ops/attention_block.h"

namespace loom::ops::cpu {

void AttentionBlockForward(const float* q_qkv, const float* kv_qkv, int64_t b, int64_t t, int nh,
                           int nkv, int hd, ChunkedPositions qp, ChunkedPositions kp, bool first,
                           float* out, float* lse);

void AttentionBlockBackward(const float* dout, const float* q_qkv, const float* kv_qkv,
                            const float* out, const float* lse, int64_t b, int64_t t, int nh,
                            int nkv, int hd, ChunkedPositions qp, ChunkedPositions kp,
                            float* dq_qkv, float* dkv_qkv);

}  // namespace loom::ops::cpu
