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
// inverse = true applies the transposed rotation (the backward of the forward). Token (bb, tt)
// sits at pos_offset + tt, or at pos_offset + positions[bb * t + tt] when positions is non-null
// (each >= 0: ops/rope.cc checks); the angles are then made once per distinct position.
template <typename T>
void RopeApply(T* qkv, int64_t b, int64_t t, int nh, int nkv, int hd, float theta,
               int64_t pos_offset, bool inverse, const int32_t* positions = nullptr);

// The angle recipe above (shared with tests).
float RopeAngle(int64_t pos, int i, int hd, float theta);

}  // namespace loom::ops::cpu
