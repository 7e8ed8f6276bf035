// CPU reference for rotary position embedding (ops/rope.h), "rotate half" convention, in place
// on the packed qkv layout. Templated on T so gradient tests run it in double.
//
// The angle is defined once for every backend: inv_freq_i = float(theta^(-2i/HD)) (computed in
// double, rounded to float), angle = float(pos) * inv_freq_i in float arithmetic, and cos/sin
// of that float angle evaluated accurately. The CUDA kernel follows the same recipe, so the
// two agree to a few ulp even at positions in the thousands.
#pragma once

#include <cstdint>

namespace loom::ops::cpu {

// qkv: [b, t, (nh + 2*nkv) * hd]; rotates the nh query and nkv key heads of every token.
// inverse = true applies the transposed rotation (the backward of the forward).
template <typename T>
void RopeApply(T* qkv, int64_t b, int64_t t, int nh, int nkv, int hd, float theta,
               int64_t pos_offset, bool inverse);

// The angle recipe above (shared with tests).
float RopeAngle(int64_t pos, int i, int hd, float theta);

}  // namespace loom::ops::cpu
