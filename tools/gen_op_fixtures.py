#!/usr/bin/env python3
"""Writes the PyTorch golden fixtures for loom's ops into tests/fixtures/ops/.

Each fixture holds small inputs drawn from a fixed seed, and the outputs and gradients that
PyTorch computes from them: the inputs are drawn in float32 (so that loom, which reads the
stored float32 values, sees exactly what PyTorch saw), the reference runs in float64 and the
results are rounded to float32 when stored. Gradients come from autograd with a random
upstream gradient. The conventions follow the contract headers ops/*.h exactly; the comment
above each builder names the header it mirrors.

Run with the system Python, which on Debian has python3-torch (1.13):
    /usr/bin/python3 tools/gen_op_fixtures.py            # rewrite tests/fixtures/ops/
    /usr/bin/python3 tools/gen_op_fixtures.py --check    # regenerate, compare, write nothing
A PyPI torch (any version >= 1.12, which has gelu(approximate='tanh')) works too. Different
torch builds may draw different random numbers; the fixtures are committed, so regenerating
is only needed when an op's contract changes.

File format (one file <name>.bin per fixture, all integers little-endian):
    magic   8 bytes   b"LOOMFIX1"
    count   u32       number of tensors
    then `count` times:
      name_len u32, name (utf-8, name_len bytes)
      dtype    u32    0 = f32, 1 = i32
      rank     u32
      dims     i64 x rank       (rank 0 is a scalar holding one element)
      data     4 bytes x numel  (row-major, little-endian)
Scalar parameters of the op (eps, theta, lr, ...) are stored as rank-0 tensors, so the file is
the single source of truth for a case. tests/ops/fixture.h reads this format.
"""

import argparse
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

MAGIC = b"LOOMFIX1"
SEED = 20240520
DTYPE_CODES = {torch.float32: 0, torch.int32: 1}


class Fixture:
    """An ordered set of named tensors, written as one .bin file."""

    def __init__(self, name):
        self.name = name
        self.tensors = []

    def f32(self, name, t):
        self.tensors.append((name, torch.as_tensor(t).detach().to(torch.float32).contiguous()))

    def i32(self, name, t):
        self.tensors.append((name, torch.as_tensor(t).detach().to(torch.int32).contiguous()))

    def encode(self):
        out = bytearray(MAGIC)
        out += struct.pack("<I", len(self.tensors))
        for name, t in self.tensors:
            raw = name.encode("utf-8")
            out += struct.pack("<I", len(raw)) + raw
            out += struct.pack("<II", DTYPE_CODES[t.dtype], t.dim())
            out += struct.pack("<%dq" % t.dim(), *t.shape)
            fmt = "<%d%s" % (t.numel(), "f" if t.dtype == torch.float32 else "i")
            out += struct.pack(fmt, *t.reshape(-1).tolist())
        return bytes(out)


class Rng:
    """float32 draws (exactly representable), promoted to float64 for the reference."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape, scale=1.0):
        return (torch.randn(*shape, generator=self.g, dtype=torch.float32) * scale).double()

    def uniform(self, *shape, lo=0.0, hi=1.0):
        u = torch.rand(*shape, generator=self.g, dtype=torch.float32) * (hi - lo) + lo
        return u.double()

    def randint(self, lo, hi, *shape):
        return torch.randint(lo, hi, shape, generator=self.g, dtype=torch.int64)


def leaf(t):
    return t.clone().requires_grad_(True)


def f32_exact(x):
    """Rounds a float64 value to the float32 the C++ side will read."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ---- ops/linear.h -------------------------------------------------------------------------

def linear_case(rng, name, n_lead, ic, oc, bias, gelu):
    """out = inp @ W^T + b; with gelu, pre_gelu = that and out = gelu_tanh(pre_gelu).
    Backward is that of the linear part alone (dout is the gradient of pre_gelu when gelu is
    set, as the caller runs GeluBackward first); dW and db accumulate into nonzero initial
    values."""
    fx = Fixture(name)
    x = leaf(rng.randn(*n_lead, ic))
    w = leaf(rng.randn(oc, ic, scale=1.0 / math.sqrt(ic)))
    b = leaf(rng.randn(oc, scale=0.1)) if bias else None
    pre = F.linear(x, w, b)
    fx.f32("inp", x)
    fx.f32("weight", w)
    if bias:
        fx.f32("bias", b)
    if gelu:
        fx.f32("pre_gelu", pre)
        fx.f32("out", F.gelu(pre, approximate="tanh"))
    else:
        fx.f32("out", pre)
    dout = rng.randn(*pre.shape)
    pre.backward(dout)
    dw0 = rng.randn(oc, ic, scale=0.1)
    fx.f32("dout", dout)
    fx.f32("dinp", x.grad)
    fx.f32("dweight_init", dw0)
    fx.f32("dweight", dw0 + w.grad)
    if bias:
        db0 = rng.randn(oc, scale=0.1)
        fx.f32("dbias_init", db0)
        fx.f32("dbias", db0 + b.grad)
    return fx


def gemm_case(rng, name, m, n, k, trans_a, trans_b, alpha, beta):
    """c = alpha * op(a) @ op(b) + beta * c on row-major matrices."""
    fx = Fixture(name)
    a = rng.randn(k, m) if trans_a else rng.randn(m, k)
    b = rng.randn(n, k) if trans_b else rng.randn(k, n)
    c0 = rng.randn(m, n)
    opa = a.t() if trans_a else a
    opb = b.t() if trans_b else b
    alpha, beta = f32_exact(alpha), f32_exact(beta)
    fx.f32("a", a)
    fx.f32("b", b)
    fx.i32("trans_a", int(trans_a))
    fx.i32("trans_b", int(trans_b))
    fx.f32("alpha", alpha)
    fx.f32("beta", beta)
    fx.f32("c_init", c0)
    fx.f32("c", alpha * (opa @ opb) + beta * c0)
    return fx


# ---- ops/activation.h ---------------------------------------------------------------------

def gelu_case(rng):
    fx = Fixture("gelu")
    x = leaf(rng.randn(5, 37, scale=2.0))
    out = F.gelu(x, approximate="tanh")
    dout = rng.randn(*out.shape)
    out.backward(dout)
    fx.f32("x", x)
    fx.f32("out", out)
    fx.f32("dout", dout)
    fx.f32("dx", x.grad)
    return fx


def swiglu_case(rng):
    """inp [N, 2H]: gate = inp[:, :H], up = inp[:, H:]; out = silu(gate) * up."""
    fx = Fixture("swiglu")
    n, h = 6, 19
    inp = leaf(rng.randn(n, 2 * h, scale=2.0))
    out = F.silu(inp[:, :h]) * inp[:, h:]
    dout = rng.randn(n, h)
    out.backward(dout)
    fx.f32("inp", inp)
    fx.f32("out", out)
    fx.f32("dout", dout)
    fx.f32("dinp", inp.grad)
    return fx


def add_case(rng):
    fx = Fixture("add")
    a = rng.randn(3, 4, 11)
    b = rng.randn(3, 4, 11)
    fx.f32("a", a)
    fx.f32("b", b)
    fx.f32("out", a + b)
    return fx


# ---- ops/embedding.h ----------------------------------------------------------------------

def embedding_case(rng, name, vocab_start, with_wpe):
    """out[b,t] = wte[tok - vocab_start] (zero when tok is outside this slice) + wpe[t].
    Tokens repeat, so the dwte accumulation over positions is exercised."""
    fx = Fixture(name)
    bsz, t, c, v, max_t = 3, 5, 12, 10, 8
    total_vocab = vocab_start + v + 6  # tokens also fall past the slice's end
    tokens = rng.randint(0, total_vocab, bsz, t)
    tokens[0, 1] = tokens[2, 3] = vocab_start + 2  # a repeated in-slice token
    wte = leaf(rng.randn(v, c))
    wpe = leaf(rng.randn(max_t, c)) if with_wpe else None
    local = tokens - vocab_start
    inside = (local >= 0) & (local < v)
    rows = wte[local.clamp(0, v - 1)] * inside.unsqueeze(-1).double()
    out = rows + wpe[:t].unsqueeze(0) if with_wpe else rows
    dout = rng.randn(bsz, t, c)
    out.backward(dout)
    dwte0 = rng.randn(v, c, scale=0.1)
    fx.i32("tokens", tokens)
    fx.i32("vocab_start", vocab_start)
    fx.f32("wte", wte)
    if with_wpe:
        fx.f32("wpe", wpe)
    fx.f32("out", out)
    fx.f32("dout", dout)
    fx.f32("dwte_init", dwte0)
    fx.f32("dwte", dwte0 + wte.grad)
    if with_wpe:
        dwpe0 = rng.randn(max_t, c, scale=0.1)
        fx.f32("dwpe_init", dwpe0)
        fx.f32("dwpe", dwpe0 + wpe.grad)
    return fx


# ---- ops/norm.h ---------------------------------------------------------------------------

def layernorm_ref(x, w, b, eps):
    mean = x.mean(-1)
    var = ((x - mean.unsqueeze(-1)) ** 2).mean(-1)  # biased, as PyTorch's LayerNorm
    rstd = 1.0 / torch.sqrt(var + eps)
    out = (x - mean.unsqueeze(-1)) * rstd.unsqueeze(-1) * w + b
    return out, mean, rstd


def rmsnorm_ref(x, w, eps):
    rstd = 1.0 / torch.sqrt((x * x).mean(-1) + eps)
    return x * rstd.unsqueeze(-1) * w, rstd


# Rows where epsilon matters, appended to the random rows of the norm cases: two with
# |x| ~ 1e-3 (mean square ~1e-6, the size of RMSNorm's eps and a tenth of LayerNorm's) and one
# constant row of 1e-3 (variance 0: LayerNorm's rstd is exactly 1/sqrt(eps); RMSNorm's mean
# square is 1e-6). A norm that drops eps is off by a large factor on them (or divides by 0).
# They come from a generator of their own so that the shared stream, and with it every other
# fixture, stays as it was.
NORM_EPS_ROWS = 3


def norm_eps_rows(extra, c):
    small = extra.randn(2, c, scale=1e-3)
    constant = torch.full((1, c), 1e-3, dtype=torch.float32).double()
    return torch.cat([small, constant])


def layernorm_case(rng):
    fx = Fixture("layernorm")
    n, c, eps = 7, 24, f32_exact(1e-5)
    extra = Rng(SEED + 1)  # the epsilon rows draw from their own stream (see norm_eps_rows)
    x = leaf(torch.cat([rng.randn(n, c, scale=1.5) + 0.5, norm_eps_rows(extra, c)]))
    w = leaf(rng.randn(c, scale=0.2) + 1.0)
    b = leaf(rng.randn(c, scale=0.2))
    out, mean, rstd = layernorm_ref(x, w, b, eps)
    # The hand-written reference must agree with PyTorch's own LayerNorm.
    assert torch.allclose(out, F.layer_norm(x, (c,), w, b, eps), rtol=1e-12, atol=1e-12)
    dout = torch.cat([rng.randn(n, c), extra.randn(NORM_EPS_ROWS, c)])
    out.backward(dout)
    dw0, db0 = rng.randn(c, scale=0.1), rng.randn(c, scale=0.1)
    fx.f32("x", x)
    fx.f32("weight", w)
    fx.f32("bias", b)
    fx.f32("eps", eps)
    fx.f32("out", out)
    fx.f32("mean", mean)
    fx.f32("rstd", rstd)
    fx.f32("dout", dout)
    fx.f32("dx", x.grad)
    fx.f32("dweight_init", dw0)
    fx.f32("dweight", dw0 + w.grad)
    fx.f32("dbias_init", db0)
    fx.f32("dbias", db0 + b.grad)
    return fx


def rmsnorm_case(rng):
    fx = Fixture("rmsnorm")
    n, c, eps = 7, 24, f32_exact(1e-6)
    extra = Rng(SEED + 2)
    x = leaf(torch.cat([rng.randn(n, c, scale=1.5), norm_eps_rows(extra, c)]))
    w = leaf(rng.randn(c, scale=0.2) + 1.0)
    out, rstd = rmsnorm_ref(x, w, eps)
    dout = torch.cat([rng.randn(n, c), extra.randn(NORM_EPS_ROWS, c)])
    out.backward(dout)
    dw0 = rng.randn(c, scale=0.1)
    fx.f32("x", x)
    fx.f32("weight", w)
    fx.f32("eps", eps)
    fx.f32("out", out)
    fx.f32("rstd", rstd)
    fx.f32("dout", dout)
    fx.f32("dx", x.grad)
    fx.f32("dweight_init", dw0)
    fx.f32("dweight", dw0 + w.grad)
    return fx


def fused_residual_case(rng, rms):
    """residual_out = a + b; out = norm(residual_out) (forward only, as in the header)."""
    fx = Fixture("fused_residual_rmsnorm" if rms else "fused_residual_layernorm")
    n, c = 6, 20
    eps = f32_exact(1e-6 if rms else 1e-5)
    a = rng.randn(n, c)
    b = rng.randn(n, c, scale=0.5)
    w = rng.randn(c, scale=0.2) + 1.0
    fx.f32("a", a)
    fx.f32("b", b)
    fx.f32("weight", w)
    fx.f32("eps", eps)
    # loom adds in float32 and normalises that sum; so does the reference.
    res = (a.float() + b.float()).double()
    fx.f32("residual_out", res)
    if rms:
        out, rstd = rmsnorm_ref(res, w, eps)
    else:
        bias = rng.randn(c, scale=0.2)
        fx.f32("bias", bias)
        out, mean, rstd = layernorm_ref(res, w, bias, eps)
        fx.f32("mean", mean)
    fx.f32("out", out)
    fx.f32("rstd", rstd)
    return fx


# ---- ops/rope.h ---------------------------------------------------------------------------

def rope_apply(qkv, n_head, n_kv, hd, theta, pos_offset):
    """Rotate-half RoPE on the q and k heads of packed qkv [B, T, (NH + 2 NKV) * HD]: pair
    (x[i], x[i + HD/2]) of each head rotates by angle pos * theta^(-2i/HD)."""
    bsz, t, _ = qkv.shape
    heads = qkv.view(bsz, t, n_head + 2 * n_kv, hd)
    half = hd // 2
    inv_freq = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / hd)
    pos = torch.arange(t, dtype=torch.float64) + pos_offset
    ang = pos[:, None] * inv_freq[None, :]  # [T, HD/2]
    cos, sin = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    qk = heads[:, :, : n_head + n_kv]
    x1, x2 = qk[..., :half], qk[..., half:]
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    out = torch.cat([rotated, heads[:, :, n_head + n_kv :]], dim=2)
    return out.reshape(bsz, t, -1)


def rope_case(rng):
    fx = Fixture("rope")
    bsz, t, n_head, n_kv, hd = 2, 6, 4, 2, 8
    theta, pos_offset = 10000.0, 5
    qkv = leaf(rng.randn(bsz, t, (n_head + 2 * n_kv) * hd))
    out = rope_apply(qkv, n_head, n_kv, hd, theta, pos_offset)
    dout = rng.randn(*out.shape)
    out.backward(dout)
    fx.i32("n_head", n_head)
    fx.i32("n_kv_head", n_kv)
    fx.f32("theta", theta)
    fx.i32("pos_offset", pos_offset)
    fx.f32("qkv", qkv)
    fx.f32("out", out)
    fx.f32("dout", dout)
    fx.f32("dqkv", qkv.grad)  # the inverse rotation of dout on q and k; v passes through
    return fx


# ---- ops/attention.h ----------------------------------------------------------------------

def attention_ref(qkv, n_head, n_kv, hd):
    """Causal attention, GQA on packed qkv; query head h reads kv head h // (NH / NKV)."""
    bsz, t, _ = qkv.shape
    heads = qkv.view(bsz, t, n_head + 2 * n_kv, hd).transpose(1, 2)  # [B, H, T, HD]
    q = heads[:, :n_head]
    k = heads[:, n_head : n_head + n_kv].repeat_interleave(n_head // n_kv, dim=1)
    v = heads[:, n_head + n_kv :].repeat_interleave(n_head // n_kv, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    mask = torch.ones(t, t, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # [B, NH, T]
    probs = torch.exp(scores - lse.unsqueeze(-1))
    out = (probs @ v).transpose(1, 2).reshape(bsz, t, n_head * hd)
    return out, lse


def attention_crosscheck(qkv, out, lse, dout, n_head, n_kv, hd):
    """Checks attention_ref, forward and backward, against PyTorch's own attention module,
    torch.nn.MultiheadAttention (torch 1.13 has it) with identity projections and a causal
    mask, in float64; query head h is given kv head h // (NH / NKV) by indexing, so the GQA
    sums of dK and dV come from autograd through that indexing. The log-sum-exp is checked
    against an explicit per-head loop."""
    bsz, t, _ = qkv.shape
    e = n_head * hd
    group = n_head // n_kv
    x = qkv.detach().clone().requires_grad_(True)
    heads = x.view(bsz, t, n_head + 2 * n_kv, hd)
    q = heads[:, :, :n_head].reshape(bsz, t, e)
    k = torch.cat([heads[:, :, n_head + h // group] for h in range(n_head)], dim=-1)
    v = torch.cat([heads[:, :, n_head + n_kv + h // group] for h in range(n_head)], dim=-1)
    mha = torch.nn.MultiheadAttention(e, n_head, bias=False, batch_first=True,
                                      dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.eye(e, dtype=torch.float64).repeat(3, 1))
        mha.out_proj.weight.copy_(torch.eye(e, dtype=torch.float64))
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)  # True = may not attend
    ref, _ = mha(q, k, v, attn_mask=causal, need_weights=False)
    assert torch.allclose(out.detach(), ref.detach(), rtol=0, atol=1e-10), "attention forward"
    ref.backward(dout)
    assert torch.allclose(qkv.grad, x.grad, rtol=0, atol=1e-10), "attention backward"
    for h in range(n_head):
        qh = heads[:, :, h].detach()
        kh = heads[:, :, n_head + h // group].detach()
        for i in range(t):
            s = (qh[:, i : i + 1] * kh[:, : i + 1]).sum(-1) / math.sqrt(hd)  # [B, i + 1]
            want = torch.log(torch.exp(s - s.max(-1, keepdim=True).values).sum(-1)) + s.max(-1).values
            assert torch.allclose(lse[:, h, i].detach(), want, rtol=0, atol=1e-10), "attention lse"


def attention_case(rng, name, bsz, t, n_head, n_kv, hd):
    fx = Fixture(name)
    qkv = leaf(rng.randn(bsz, t, (n_head + 2 * n_kv) * hd))
    out, lse = attention_ref(qkv, n_head, n_kv, hd)
    dout = rng.randn(*out.shape)
    out.backward(dout)
    attention_crosscheck(qkv, out, lse, dout, n_head, n_kv, hd)
    fx.i32("n_head", n_head)
    fx.i32("n_kv_head", n_kv)
    fx.f32("qkv", qkv)
    fx.f32("out", out)
    fx.f32("lse", lse)
    fx.f32("dout", dout)
    fx.f32("dqkv", qkv.grad)
    return fx


# ---- ops/cross_entropy.h ------------------------------------------------------------------

def ce_rows(logits, targets, valid_vocab):
    """Per-row losses over the first valid_vocab columns; ignored rows (target < 0) give 0."""
    lsm = torch.log_softmax(logits[:, :valid_vocab], dim=-1)
    keep = targets >= 0
    picked = lsm.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
    return torch.where(keep, -picked, torch.zeros_like(picked))


def cross_entropy_case(rng, name, n, v, valid_vocab):
    fx = Fixture(name)
    vv = v if valid_vocab < 0 else valid_vocab
    logits = leaf(rng.randn(n, v, scale=3.0))
    targets = rng.randint(0, vv, n)
    targets[1] = -1
    targets[n - 2] = -100  # any negative target is ignored
    losses = ce_rows(logits, targets, vv)
    dloss = f32_exact(1.0 / (n * 2))  # e.g. mean over N rows and 2 accumulation steps
    (losses * dloss).sum().backward()
    fx.f32("logits", logits)
    fx.i32("targets", targets)
    fx.f32("dloss", dloss)
    fx.i32("valid_vocab", valid_vocab)
    fx.f32("losses", losses)
    fx.f32("dlogits", logits.grad)
    return fx


def vocab_parallel_ce_case(rng):
    """Two tensor ranks hold columns [0, VS) and [VS, 2 VS) of the (padded) logits; the last
    3 columns of the second slice are padding. Stores each rank's pieces and the all-reduced
    values the caller would combine them into."""
    fx = Fixture("cross_entropy_vocab_parallel")
    n, vs, pad = 8, 13, 3
    v_real = 2 * vs - pad
    logits = leaf(rng.randn(n, 2 * vs, scale=3.0))
    targets = rng.randint(0, v_real, n)
    targets[3] = -1
    targets[0], targets[1] = 2, vs + 1  # one target in each slice for sure
    losses = ce_rows(logits, targets, v_real)
    dloss = f32_exact(1.0 / n)
    (losses * dloss).sum().backward()
    real = logits.detach()[:, :v_real]
    global_max = real.max(dim=1).values
    fx.i32("targets", targets)
    fx.f32("dloss", dloss)
    fx.i32("n_slices", 2)
    gte = torch.zeros(n, dtype=torch.float64)
    for r in range(2):
        lo = r * vs
        valid = min(vs, v_real - lo)
        sl = logits.detach()[:, lo : lo + vs]
        tl = torch.zeros(n, dtype=torch.float64)
        for i in range(n):
            if lo <= targets[i] < lo + vs:
                tl[i] = sl[i, targets[i] - lo]
        gte += tl
        fx.f32("logits_%d" % r, sl)
        fx.i32("vocab_start_%d" % r, lo)
        fx.i32("valid_vocab_%d" % r, valid if valid < vs else -1)
        fx.f32("row_max_%d" % r, sl[:, :valid].max(dim=1).values)
        fx.f32("sum_exp_%d" % r, torch.exp(sl[:, :valid] - global_max[:, None]).sum(dim=1))
        fx.f32("target_logit_%d" % r, tl)
        fx.f32("dlogits_%d" % r, logits.grad[:, lo : lo + vs])
    fx.f32("global_max", global_max)
    fx.f32("global_sum_exp", torch.exp(real - global_max[:, None]).sum(dim=1))
    fx.f32("global_target_logit", gte)
    fx.f32("losses", losses)
    return fx


# ---- ops/optimizer.h ----------------------------------------------------------------------

def adamw_case(rng):
    """One torch.optim.AdamW step from given moments at a given (1-based) step; the gradient
    is first multiplied by grad_scale, as loom does."""
    fx = Fixture("adamw")
    n = 53
    p = dict(lr=f32_exact(3e-3), beta1=f32_exact(0.9), beta2=f32_exact(0.95),
             eps=f32_exact(1e-8), weight_decay=f32_exact(0.1), step=7,
             grad_scale=f32_exact(0.5))
    params = rng.randn(n)
    grads = rng.randn(n)
    m = rng.randn(n, scale=0.1)
    v = rng.uniform(n, lo=0.0, hi=0.05)
    w = params.clone().requires_grad_(True)
    opt = torch.optim.AdamW([w], lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"],
                            weight_decay=p["weight_decay"], foreach=False)
    w.grad = grads * p["grad_scale"]
    # torch counts steps itself and increments before using the count: seed it with step - 1.
    opt.state[w] = {"step": torch.tensor(float(p["step"] - 1)), "exp_avg": m.clone(),
                    "exp_avg_sq": v.clone()}
    opt.step()
    st = opt.state[w]
    # The same update written out, as a guard against torch changing its semantics.
    g = grads * p["grad_scale"]
    m2 = p["beta1"] * m + (1 - p["beta1"]) * g
    v2 = p["beta2"] * v + (1 - p["beta2"]) * g * g
    mhat = m2 / (1 - p["beta1"] ** p["step"])
    vhat = v2 / (1 - p["beta2"] ** p["step"])
    want = params - p["lr"] * p["weight_decay"] * params - p["lr"] * mhat / (vhat.sqrt() + p["eps"])
    assert torch.allclose(w.detach(), want, rtol=1e-12, atol=1e-14)
    for key in ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_scale"):
        fx.f32(key, p[key])
    fx.i32("step", p["step"])
    fx.f32("params_init", params)
    fx.f32("grads", grads)
    fx.f32("m_init", m)
    fx.f32("v_init", v)
    fx.f32("params", w)
    fx.f32("m", st["exp_avg"])
    fx.f32("v", st["exp_avg_sq"])
    return fx


def sum_of_squares_case(rng):
    fx = Fixture("sum_of_squares")
    x = rng.randn(301)
    out0 = torch.tensor([2.5], dtype=torch.float64)
    fx.f32("x", x)
    fx.f32("out_init", out0)
    fx.f32("out", out0 + (x * x).sum())
    return fx


def build_all():
    rng = Rng(SEED)
    return [
        linear_case(rng, "linear", (2, 3), 16, 12, bias=True, gelu=False),
        linear_case(rng, "linear_nobias", (5,), 9, 7, bias=False, gelu=False),
        linear_case(rng, "linear_gelu", (4,), 10, 14, bias=True, gelu=True),
        gemm_case(rng, "gemm_nn", 5, 6, 7, False, False, 1.0, 0.0),
        gemm_case(rng, "gemm_tn", 5, 6, 7, True, False, 0.5, 1.0),
        gemm_case(rng, "gemm_nt", 5, 6, 7, False, True, 1.0, 1.0),
        gemm_case(rng, "gemm_tt", 5, 6, 7, True, True, -2.0, 0.25),
        gelu_case(rng),
        swiglu_case(rng),
        add_case(rng),
        embedding_case(rng, "embedding", 0, with_wpe=True),
        embedding_case(rng, "embedding_vocab_slice", 16, with_wpe=False),
        layernorm_case(rng),
        rmsnorm_case(rng),
        fused_residual_case(rng, rms=False),
        fused_residual_case(rng, rms=True),
        rope_case(rng),
        attention_case(rng, "attention_mha", 2, 7, 3, 3, 8),
        attention_case(rng, "attention_gqa", 2, 9, 4, 2, 8),
        cross_entropy_case(rng, "cross_entropy", 9, 23, -1),
        cross_entropy_case(rng, "cross_entropy_padded", 9, 24, 19),
        vocab_parallel_ce_case(rng),
        adamw_case(rng),
        sum_of_squares_case(rng),
    ]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "ops"))
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and report files that would change")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    fixtures = build_all()
    os.makedirs(args.out, exist_ok=True)
    changed, total = [], 0
    for fx in fixtures:
        data = fx.encode()
        total += len(data)
        path = os.path.join(args.out, fx.name + ".bin")
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old != data:
            changed.append(fx.name)
            if not args.check:
                with open(path, "wb") as f:
                    f.write(data)
    print("%d fixtures, %d bytes, torch %s; %s: %s" %
          (len(fixtures), total, torch.__version__, "would change" if args.check else "written",
           ", ".join(changed) or "none"))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
