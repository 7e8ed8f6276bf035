// Checks for ops/attention_block.h, then dispatch. HD is derived from the packed width as in
// ops/attention.cc.
#include "ops/attention_block.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "ops/arg_checks.h"
#include "ops/cpu/attention_block.h"
#include "ops/host_kernel.h"
#include "runtime/status.h"
#ifdef LOOM_WITH_CUDA
#include "ops/cuda/attention_block.h"
#endif

namespace loom::ops {
namespace {

struct Dims {
  int64_t b = 0, t = 0;
  int hd = 0;
};

absl::Status Expect(const Tensor& x, const Tensor& ref, const Shape& shape, DType dtype,
                    const char* op, const char* name) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(x, op, name));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(ref, x, op, name));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(x, dtype, op, name));
  if (x.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, ": expected shape ",
                                                   shape.ToString(), ", got ", TensorDesc(x)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Dims> CheckBlocks(const char* op, const Tensor& q, const Tensor& kv, int nh, int nkv,
                                 const ChunkedPositions& qp, const ChunkedPositions& kp) {
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(q, op, "q_qkv"));
  if (nh <= 0 || nkv <= 0 || nh % nkv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": n_head (", nh, ") must be a positive multiple of n_kv_head (", nkv, ")"));
  }
  const int64_t heads = nh + 2 * static_cast<int64_t>(nkv);
  if (q.rank() != 3 || q.dim(2) == 0 || q.dim(2) % heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": q_qkv: expected [B, T, (n_head + 2*n_kv_head) * HD] = [B, T, ", heads,
                     " * HD], got ", TensorDesc(q)));
  }
  LOOM_RETURN_IF_ERROR(Expect(kv, q, q.shape(), q.dtype(), op, "kv_qkv"));
  for (const auto& [p, name] : {std::pair{qp, "q_pos"}, std::pair{kp, "kv_pos"}}) {
    if (p.chunk <= 0 || 2 * p.chunk != q.dim(1) || p.start0 < 0 || p.start0 + p.chunk > p.start1) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": ", name, " (chunk ", p.chunk, ", starts ", p.start0, " and ", p.start1,
          ") must describe two ascending chunks covering the block's ", q.dim(1), " rows"));
    }
  }
  const Dims d{q.dim(0), q.dim(1), static_cast<int>(q.dim(2) / heads)};
  if (RunsCpuKernels(q)) {
    LOOM_RETURN_IF_ERROR(CheckDTypeArg(q, DType::kF32, op, "q_qkv (CPU backend)"));
  } else if (q.dtype() != DType::kF32 && q.dtype() != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": q_qkv: expected dtype f32 or bf16, got ", TensorDesc(q)));
  } else if (d.hd > 128) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": head dim HD = ", d.hd, " is not supported by the CUDA block kernels (at most 128)"));
  }
  return d;
}

// Segment ids: i32 [B, S] beside q_qkv, S covering every global position either block holds.
absl::Status CheckSegments(const char* op, const Tensor* segments, const Tensor& q, int64_t b,
                           const ChunkedPositions& qp, const ChunkedPositions& kp) {
  if (segments == nullptr) return absl::OkStatus();
  LOOM_RETURN_IF_ERROR(CheckDefinedArg(*segments, op, "segments"));
  LOOM_RETURN_IF_ERROR(CheckSameDeviceArg(q, *segments, op, "segments"));
  LOOM_RETURN_IF_ERROR(CheckDTypeArg(*segments, DType::kI32, op, "segments"));
  const int64_t needed = std::max(qp.start1, kp.start1) + qp.chunk;
  if (segments->rank() != 2 || segments->dim(0) != b || segments->dim(1) < needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": segments: expected the whole sequence's ids [B = ", b, ", seq_len >= ", needed,
        "] (indexed by global position), got ", TensorDesc(*segments)));
  }
  return absl::OkStatus();
}

// Ids must not decrease along the sequence (read where the host may: inside the kernel task).
absl::Status CheckSegmentOrder(const char* op, const int32_t* seg, int64_t b, int64_t s) {
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t i = 1; i < s; ++i) {
      if (seg[bi * s + i] < seg[bi * s + i - 1]) {
        return absl::InvalidArgumentError(
            absl::StrCat(op, ": segments[", bi, ", ", i, "] = ", seg[bi * s + i],
                         " is below segments[", bi, ", ", i - 1, "] = ", seg[bi * s + i - 1],
                         " (ids must not decrease along the sequence)"));
      }
    }
  }
  return absl::OkStatus();
}

const int32_t* SegPtr(const Tensor* s) { return s ? s->data_as<const int32_t>() : nullptr; }
int64_t SegLen(const Tensor* s) { return s ? s->dim(1) : 0; }

}  // namespace

absl::Status AttentionBlockForward(const Tensor& q_qkv, const Tensor& kv_qkv, int n_head,
                                   int n_kv_head, ChunkedPositions q_pos, ChunkedPositions kv_pos,
                                   bool first, const Tensor& out, const Tensor& lse,
                                   const Tensor* segments) {
  const char* op = "AttentionBlockForward";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckBlocks(op, q_qkv, kv_qkv, n_head, n_kv_head, q_pos, kv_pos));
  LOOM_RETURN_IF_ERROR(
      Expect(out, q_qkv, Shape({d.b, d.t, int64_t{n_head} * d.hd}), q_qkv.dtype(), op, "out"));
  LOOM_RETURN_IF_ERROR(
      Expect(lse, q_qkv, Shape({d.b, int64_t{n_head}, d.t}), DType::kF32, op, "lse"));
  LOOM_RETURN_IF_ERROR(CheckSegments(op, segments, q_qkv, d.b, q_pos, kv_pos));
  if (!RunsCpuKernels(q_qkv)) {
#ifdef LOOM_WITH_CUDA
    return cuda::AttentionBlockForward(q_qkv, kv_qkv, d.b, d.t, n_head, n_kv_head, d.hd, q_pos,
                                       kv_pos, first, out, lse, segments);
#else
    return absl::UnimplementedError(absl::StrCat(op, ": CUDA tensor in a build without CUDA"));
#endif
  }
  return RunCpuKernel(q_qkv, [=, segments = OptionalTensor(segments)]() -> absl::Status {
    if (segments)
      LOOM_RETURN_IF_ERROR(CheckSegmentOrder(op, SegPtr(segments), d.b, SegLen(segments)));
    cpu::AttentionBlockForward(q_qkv.data_as<const float>(), kv_qkv.data_as<const float>(), d.b,
                               d.t, n_head, n_kv_head, d.hd, q_pos, kv_pos, first,
                               out.data_as<float>(), lse.data_as<float>(), SegPtr(segments),
                               SegLen(segments));
    return absl::OkStatus();
  });
}

absl::Status AttentionBlockBackward(const Tensor& dout, const Tensor& q_qkv, const Tensor& kv_qkv,
                                    const Tensor& out, const Tensor& lse, int n_head, int n_kv_head,
                                    ChunkedPositions q_pos, ChunkedPositions kv_pos,
                                    const Tensor& dq_qkv, const Tensor& dkv_qkv,
                                    const Tensor* segments) {
  const char* op = "AttentionBlockBackward";
  LOOM_ASSIGN_OR_RETURN(Dims d, CheckBlocks(op, q_qkv, kv_qkv, n_head, n_kv_head, q_pos, kv_pos));
  const Shape out_shape({d.b, d.t, int64_t{n_head} * d.hd});
  LOOM_RETURN_IF_ERROR(Expect(out, q_qkv, out_shape, q_qkv.dtype(), op, "out"));
  LOOM_RETURN_IF_ERROR(Expect(dout, q_qkv, out_shape, q_qkv.dtype(), op, "dout"));
  LOOM_RETURN_IF_ERROR(
      Expect(lse, q_qkv, Shape({d.b, int64_t{n_head}, d.t}), DType::kF32, op, "lse"));
  LOOM_RETURN_IF_ERROR(Expect(dq_qkv, q_qkv, q_qkv.shape(), q_qkv.dtype(), op, "dq_qkv"));
  LOOM_RETURN_IF_ERROR(Expect(dkv_qkv, q_qkv, q_qkv.shape(), q_qkv.dtype(), op, "dkv_qkv"));
  LOOM_RETURN_IF_ERROR(CheckSegments(op, segments, q_qkv, d.b, q_pos, kv_pos));
  if (!RunsCpuKernels(q_qkv)) {
#ifdef LOOM_WITH_CUDA
    return cuda::AttentionBlockBackward(dout, q_qkv, kv_qkv, out, lse, d.b, d.t, n_head, n_kv_head,
                                        d.hd, q_pos, kv_pos, dq_qkv, dkv_qkv, segments);
#else
    return absl::UnimplementedError(absl::StrCat(op, ": CUDA tensor in a build without CUDA"));
#endif
  }
  return RunCpuKernel(q_qkv, [=, segments = OptionalTensor(segments)]() -> absl::Status {
    if (segments)
      LOOM_RETURN_IF_ERROR(CheckSegmentOrder(op, SegPtr(segments), d.b, SegLen(segments)));
    cpu::AttentionBlockBackward(dout.data_as<const float>(), q_qkv.data_as<const float>(),
                                kv_qkv.data_as<const float>(), out.data_as<const float>(),
                                lse.data_as<const float>(), d.b, d.t, n_head, n_kv_head, d.hd,
                                q_pos, kv_pos, dq_qkv.data_as<float>(), dkv_qkv.data_as<float>(),
                                SegPtr(segments), SegLen(segments));
    return absl::OkStatus();
  });
}

}  // namespace loom::ops
