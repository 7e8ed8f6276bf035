// cuBLASLt GEMMs for ops/linear.h. Row-major matrices are column-major matrices transposed,
// so every product is issued as its transpose: out^T = W x inp^T for the forward pass,
// dinp^T = W^T x dout^T, dW^T = inp^T x dout. Algorithms chosen by the cuBLASLt heuristic are
// cached per problem (shape, dtypes, epilogue, pointer alignment, TF32) together with the
// descriptors themselves, so a steady-state call creates nothing and queries no heuristic: it
// sets the call's bias and aux pointers on the cached descriptor and runs the product.
// fp32 products use TF32 tensor cores only when SetFp32GemmTf32(true) (RuntimeConfig.tf32).
#include "ops/cuda/linear.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "ops/cuda/context.h"
#include "ops/cuda/optimizer.h"
#include "runtime/status.h"

namespace loom::ops::cuda {
namespace {

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

// Largest power of two (at most 256) dividing the address: what cuBLASLt may assume.
uint32_t AlignmentOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

// One column-major product D[m, n] = alpha * op(A)[m, k] op(B)[k, n] + beta * D, with an
// optional epilogue. Matrices are contiguous: the leading dimension is the stored row count.
struct MatmulCall {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  const void* b = nullptr;
  void* d = nullptr;
  cudaDataType_t ab_type = CUDA_R_32F;
  cudaDataType_t d_type = CUDA_R_32F;
  float alpha = 1.0f, beta = 0.0f;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  void* bias = nullptr;  // bias input (BIAS, GELU_AUX_BIAS) or bias-gradient output (BGRADB)
  cudaDataType_t bias_type = CUDA_R_32F;
  void* aux = nullptr;  // GELU_AUX*: receives the pre-activation, [m, n] with ld m
  int64_t lda() const { return trans_a ? k : m; }
  int64_t ldb() const { return trans_b ? n : k; }
};

// Owns the cuBLASLt descriptors of one call.
struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescriptors() {
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

// One problem's descriptors and algorithm, built on its first call and kept for the process
// (a training run has a few dozen distinct problems).
struct CachedAlgo {
  bool supported = true;  // this cuBLASLt can do the fused form (epilogue attributes set)
  bool found = false;     // the heuristic found an algorithm
  cublasLtMatmulAlgo_t algo;
  std::shared_ptr<LtDescriptors> desc;
};

std::atomic<bool>& Tf32() {
  static std::atomic<bool> on{false};
  return on;
}

std::mutex& AlgoCacheMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::map<std::string, CachedAlgo>& AlgoCache() {
  static auto* cache = new std::map<std::string, CachedAlgo>();
  return *cache;
}

std::string AlgoKey(int device, const MatmulCall& mm) {
  return absl::StrCat(device, "|", mm.trans_a, mm.trans_b, "|", mm.m, ",", mm.n, ",", mm.k, "|",
                      static_cast<int>(mm.ab_type), ",", static_cast<int>(mm.d_type), "|",
                      static_cast<int>(mm.epilogue), ",", static_cast<int>(mm.bias_type), "|",
                      AlignmentOf(mm.a), ",", AlignmentOf(mm.b), ",", AlignmentOf(mm.d), ",",
                      mm.bias != nullptr ? AlignmentOf(mm.bias) : 0u, ",",
                      mm.aux != nullptr ? AlignmentOf(mm.aux) : 0u, "|", mm.beta != 0.0f,
                      mm.bias != nullptr, mm.aux != nullptr, "|", Tf32().load());
}

// TF32 tensor cores for fp32 inputs when allowed; fp32 accumulation in every case.
cublasComputeType_t ComputeType(const MatmulCall& mm) {
  return mm.ab_type == CUDA_R_32F && Tf32().load() ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                   : CUBLAS_COMPUTE_32F;
}

// Sets up the descriptors. A failure to set an epilogue attribute means this cuBLASLt cannot
// do the fused form: reported as *supported = false, not as an error.
absl::Status BuildDescriptors(DeviceContext* ctx, const MatmulCall& mm, LtDescriptors* desc,
                              bool* supported) {
  *supported = true;
  LOOM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc->op, ComputeType(mm), CUDA_R_32F));
  const cublasOperation_t ta = mm.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = mm.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  LOOM_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LOOM_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (mm.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    auto set = [&](cublasLtMatmulDescAttributes_t attr, const void* value, size_t size) {
      if (cublasLtMatmulDescSetAttribute(desc->op, attr, value, size) != CUBLAS_STATUS_SUCCESS) {
        *supported = false;
      }
    };
    set(CUBLASLT_MATMUL_DESC_EPILOGUE, &mm.epilogue, sizeof(mm.epilogue));
    if (mm.bias != nullptr) {
      set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, &mm.bias, sizeof(mm.bias));
      // The bias type defaults to D's; name it only when it differs, the rarer combination.
      if (mm.bias_type != mm.d_type) {
        const int32_t bias_type = mm.bias_type;
        set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type));
      }
    }
    if (mm.aux != nullptr) {  // the aux buffer has D's type (the default)
      set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &mm.aux, sizeof(mm.aux));
      const int64_t ld_aux = mm.m;
      set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof(ld_aux));
    }
    if (!*supported) return absl::OkStatus();
  }
  LOOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc->a, mm.ab_type, mm.trans_a ? mm.k : mm.m,
                                               mm.trans_a ? mm.m : mm.k, mm.lda()));
  LOOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc->b, mm.ab_type, mm.trans_b ? mm.n : mm.k,
                                               mm.trans_b ? mm.k : mm.n, mm.ldb()));
  LOOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc->d, mm.d_type, mm.m, mm.n, mm.m));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&desc->pref));
  const uint64_t workspace = ctx->workspace_bytes;
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      desc->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  const uint32_t align_a = AlignmentOf(mm.a), align_b = AlignmentOf(mm.b),
                 align_d = AlignmentOf(mm.d);
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      desc->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      desc->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      desc->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      desc->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)));
  return absl::OkStatus();
}

// Runs the product when cuBLASLt has an algorithm for it; returns false (having done nothing)
// when it has none, so the caller can fall back to an unfused form.
absl::StatusOr<bool> TryMatmul(DeviceContext* ctx, const MatmulCall& mm) {
  const std::string key = AlgoKey(ctx->device, mm);
  CachedAlgo entry;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(AlgoCacheMutex());
    auto it = AlgoCache().find(key);
    if (it != AlgoCache().end()) {
      entry = it->second;
      cached = true;
    }
  }
  if (!cached) {
    entry.desc = std::make_shared<LtDescriptors>();
    LOOM_RETURN_IF_ERROR(BuildDescriptors(ctx, mm, entry.desc.get(), &entry.supported));
    if (entry.supported) {
      cublasLtMatmulHeuristicResult_t result{};
      int count = 0;
      const cublasStatus_t rc = cublasLtMatmulAlgoGetHeuristic(
          ctx->cublaslt, entry.desc->op, entry.desc->a, entry.desc->b, entry.desc->d, entry.desc->d,
          entry.desc->pref, 1, &result, &count);
      if (rc != CUBLAS_STATUS_SUCCESS && rc != CUBLAS_STATUS_NOT_SUPPORTED) {
        LOOM_CUBLAS_CHECK(rc);
      }
      entry.found = rc == CUBLAS_STATUS_SUCCESS && count > 0;
      if (entry.found) entry.algo = result.algo;
    }
    std::lock_guard<std::mutex> lock(AlgoCacheMutex());
    AlgoCache()[key] = entry;
  } else if (entry.supported && entry.found) {
    // The cached descriptor carries the first call's pointers: set this call's.
    const LtDescriptors& desc = *entry.desc;
    if (mm.bias != nullptr) {
      LOOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &mm.bias, sizeof(mm.bias)));
    }
    if (mm.aux != nullptr) {
      LOOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &mm.aux, sizeof(mm.aux)));
    }
  }
  if (!entry.supported || !entry.found) return false;
  const LtDescriptors& desc = *entry.desc;
  LOOM_CUBLAS_CHECK(cublasLtMatmul(ctx->cublaslt, desc.op, &mm.alpha, mm.a, desc.a, mm.b, desc.b,
                                   &mm.beta, mm.d, desc.d, mm.d, desc.d, &entry.algo,
                                   ctx->workspace, ctx->workspace_bytes, ctx->stream));
  return true;
}

// A plain product (no epilogue): cuBLASLt must have an algorithm for it.
absl::Status RunMatmul(DeviceContext* ctx, const MatmulCall& mm, const char* what) {
  LOOM_ASSIGN_OR_RETURN(bool ran, TryMatmul(ctx, mm));
  if (!ran) {
    return absl::InternalError(absl::StrCat(
        what, ": cuBLASLt has no algorithm for m=", mm.m, " n=", mm.n, " k=", mm.k, " (A/B type ",
        static_cast<int>(mm.ab_type), ", D type ", static_cast<int>(mm.d_type), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

void SetFp32GemmTf32(bool on) { Tf32().store(on); }
bool Fp32GemmTf32() { return Tf32().load(); }

absl::Status LinearForward(const Tensor& inp, const Tensor& weight, const Tensor* bias,
                           const Tensor& out, const Tensor* pre_gelu, int64_t n, int64_t ic,
                           int64_t oc) {
  if (n == 0 || oc == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(inp));
  const Tensor& target = pre_gelu != nullptr ? *pre_gelu : out;
  const Tensor* gelu_out = pre_gelu != nullptr ? &out : nullptr;
  if (ic == 0) {  // an empty product: out = bias (then GeLU)
    LOOM_CUDA_CHECK(cudaMemsetAsync(target.data(), 0, target.nbytes(), ctx->stream));
    return BiasGeluEpilogue(target, bias, gelu_out, n, oc);
  }
  // out^T [OC, N] = W [OC, IC] (stored as W^T, column-major) x inp^T [IC, N].
  MatmulCall mm;
  mm.trans_a = true;
  mm.m = oc;
  mm.n = n;
  mm.k = ic;
  mm.a = weight.data();
  mm.b = inp.data();
  mm.ab_type = CudaType(inp.dtype());

  if (bias != nullptr || pre_gelu != nullptr) {
    MatmulCall fused = mm;
    fused.d = out.data();
    fused.d_type = CudaType(out.dtype());
    bool try_fused = bias == nullptr || AlignmentOf(bias->data()) >= 16;
    if (bias != nullptr) {
      fused.bias = bias->data();
      fused.bias_type = CudaType(bias->dtype());
    }
    if (pre_gelu != nullptr) {
      fused.epilogue =
          bias != nullptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
      fused.aux = pre_gelu->data();
      // cuBLASLt wants the aux leading dimension a multiple of 8 and the buffer aligned.
      try_fused = try_fused && oc % 8 == 0 && AlignmentOf(pre_gelu->data()) >= 16;
    } else {
      fused.epilogue = CUBLASLT_EPILOGUE_BIAS;
    }
    if (try_fused) {
      LOOM_ASSIGN_OR_RETURN(bool ran, TryMatmul(ctx, fused));
      if (ran) return absl::OkStatus();
    }
  }
  mm.d = target.data();
  mm.d_type = CudaType(target.dtype());
  LOOM_RETURN_IF_ERROR(RunMatmul(ctx, mm, "LinearForward"));
  if (bias != nullptr || gelu_out != nullptr) {
    return BiasGeluEpilogue(target, bias, gelu_out, n, oc);
  }
  return absl::OkStatus();
}

absl::Status LinearBackward(const Tensor& dout, const Tensor& inp, const Tensor& weight,
                            const Tensor* dinp, const Tensor& dweight, const Tensor* dbias,
                            int64_t n, int64_t ic, int64_t oc) {
  if (n == 0) return absl::OkStatus();  // nothing flows back, nothing accumulates
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(inp));
  const cudaDataType_t ab_type = CudaType(inp.dtype());
  if (dinp != nullptr && ic > 0) {
    if (oc == 0) {
      LOOM_CUDA_CHECK(cudaMemsetAsync(dinp->data(), 0, dinp->nbytes(), ctx->stream));
    } else {
      // dinp^T [IC, N] = W^T [IC, OC] (W stored column-major as [IC, OC]) x dout^T [OC, N].
      MatmulCall mm;
      mm.m = ic;
      mm.n = n;
      mm.k = oc;
      mm.a = weight.data();
      mm.b = dout.data();
      mm.d = dinp->data();
      mm.ab_type = ab_type;
      mm.d_type = CudaType(dinp->dtype());
      LOOM_RETURN_IF_ERROR(RunMatmul(ctx, mm, "LinearBackward (dinp)"));
    }
  }
  if (oc == 0) return absl::OkStatus();
  if (ic > 0) {
    // dW^T [IC, OC] += inp^T [IC, N] x dout [N, OC] (dout stored column-major as [OC, N]).
    MatmulCall mm;
    mm.trans_b = true;
    mm.m = ic;
    mm.n = oc;
    mm.k = n;
    mm.a = inp.data();
    mm.b = dout.data();
    mm.d = dweight.data();
    mm.ab_type = ab_type;
    mm.d_type = CudaType(dweight.dtype());
    mm.beta = 1.0f;
    if (dbias != nullptr) {
      // BGRADB writes (not adds) the column sums of dout, so it writes fp32 partials to
      // scratch and a small kernel adds them into dbias.
      LOOM_ASSIGN_OR_RETURN(void* partial, OpScratch(ctx, oc * sizeof(float)));
      MatmulCall fused = mm;
      fused.epilogue = CUBLASLT_EPILOGUE_BGRADB;
      fused.bias = partial;
      fused.bias_type = CUDA_R_32F;
      LOOM_ASSIGN_OR_RETURN(bool ran, TryMatmul(ctx, fused));
      if (ran) return AddF32Into(static_cast<const float*>(partial), *dbias, oc);
    }
    LOOM_RETURN_IF_ERROR(RunMatmul(ctx, mm, "LinearBackward (dweight)"));
  }
  if (dbias != nullptr) return BiasGradAccumulate(dout, *dbias, n, oc);
  return absl::OkStatus();
}

absl::Status Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                  float alpha, float beta, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return absl::OkStatus();
  LOOM_ASSIGN_OR_RETURN(DeviceContext * ctx, ContextFor(a));
  if (k == 0) {  // an empty product: c = beta * c
    if (beta == 0.0f) {
      LOOM_CUDA_CHECK(cudaMemsetAsync(c.data(), 0, c.nbytes(), ctx->stream));
      return absl::OkStatus();
    }
    return Scale(c, beta);
  }
  // c^T [N, M] = op(b)^T [N, K] x op(a)^T [K, M]; a row-major matrix read column-major is its
  // transpose, so b (or a) is passed untransposed exactly when the caller's op transposes it.
  MatmulCall mm;
  mm.trans_a = trans_b;
  mm.trans_b = trans_a;
  mm.m = n;
  mm.n = m;
  mm.k = k;
  mm.a = b.data();
  mm.b = a.data();
  mm.d = c.data();
  mm.ab_type = CudaType(a.dtype());
  mm.d_type = CudaType(c.dtype());
  mm.alpha = alpha;
  mm.beta = beta;
  return RunMatmul(ctx, mm, "Gemm");
}

}  // namespace loom::ops::cuda
