// CPU kernels of ops/attention_block.h (ring attention's block step), float, on the packed qkv
// layout. Work is split as in ops/cpu/attention.h: forward over (batch, head, block of 64
// query rows), backward over (batch, kv head) so each kv head's dK/dV has one writer. Each task
// multiplies only the rows of the key block its queries can see: the prefix up to the last
// query's position, and with segment ids from the first query's segment start on (positions and
// segment starts both increase with the row, so the visible keys of every row lie in that run).
#pragma once

#include <cstdint>

#include "ops/attention_block.h"

namespace loom::ops::cpu {

// segments: null, or i32 [b, seg_len] by global position, nondecreasing along each row (checked
// by the caller, ops/attention_block.cc).

void AttentionBlockForward(const float* q_qkv, const float* kv_qkv, int64_t b, int64_t t, int nh,
                           int nkv, int hd, ChunkedPositions qp, ChunkedPositions kp, bool first,
                           float* out, float* lse, const int32_t* segments = nullptr,
                           int64_t seg_len = 0);

void AttentionBlockBackward(const float* dout, const float* q_qkv, const float* kv_qkv,
                            const float* out, const float* lse, int64_t b, int64_t t, int nh,
                            int nkv, int hd, ChunkedPositions qp, ChunkedPositions kp,
                            float* dq_qkv, float* dkv_qkv, const int32_t* segments = nullptr,
                            int64_t seg_len = 0);

}  // namespace loom::ops::cpu
