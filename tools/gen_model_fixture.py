#!/usr/bin/env python3
"""Writes PyTorch golden fixtures for loom's whole GPT-2 and LLaMA models into
tests/fixtures/model/.

For each family a tiny model (C=32, 2 layers, 4 heads; LLaMA with 2 kv heads; vocab 64 padded
to 128 rows) gets random weights drawn in float32 from a fixed seed (so loom reads exactly what
PyTorch used), then the reference runs in float64:
  - logits [B*T, Vp] and the mean cross-entropy of one batch (B=2, T=8),
  - the gradient of that loss for every parameter,
  - the losses and global gradient norms of 10 training steps on that same batch, each step as
    loom's trainer does it (train/trainer.cc Step()): gradient of the mean loss, global
    L2 norm over all gradients, clip scale = clip / norm when norm > clip applied to the
    gradients, then torch.optim.AdamW (constant lr, betas (0.9, 0.95), eps 1e-8, weight decay
    only on 2-D weights).
Results are rounded to float32 when stored.

gpt2_schedule.bin holds the same 10 steps of the GPT-2 model from the same initial weights with
an LR schedule from torch.optim.lr_scheduler instead of a constant rate (warm-up LinearLR over 3
steps, then CosineAnnealingLR, or LinearLR decay, to min_lr at step 10; loom's schedule,
train/lr_schedule.h, as PyTorch's own schedulers compute it): per style the losses, gradient
norms and the rate each step used, so the trainer's schedule, clipping and AdamW with weight decay
are checked together against an independent reference, also across a resume.

The modules below are written from loom's conventions (model/gpt.cc, model/param_layout.cc,
ops/*.h), not from any library model:
  GPT-2: learned positions, pre-LayerNorm blocks, qkv packed [q | k | v] with head h in columns
    h*HD..(h+1)*HD of each part, GeLU (tanh), LM head tied to the token embedding.
  LLaMA: RMSNorm, RoPE "rotate half" on q and k (pairs (i, i + HD/2), angle
    pos * theta^(-2i/HD)), grouped-query attention (query head h reads kv head h / (NH/NKV)),
    SwiGLU with gate_up rows [0, F) the gate and [F, 2F) the up projection, no biases, untied
    head.
  Both: embedding / head rows >= vocab are zero and their logits are left out of the softmax.

Files written (<family> is gpt2 or llama):
  <family>.bin             LOOMFIX1 fixture (format: tools/gen_op_fixtures.py, reader:
                           tests/ops/fixture.h): config scalars, the token stream and batch,
                           "param/<name>" and "grad/<name>" per parameter (loom's global names,
                           ParamLayout::ForGpt order), logits, loss, step_losses, grad_norms.
  gpt2.llmc.bin            the GPT-2 weights as an llm.c model file (version 3, fp32).
  gpt2.llmc_bf16.bin       the same as llm.c version 5 (bf16, round to nearest even).
  llama.loom.bin           the LLaMA weights as a loom model file (magic 20241128).
  gpt2_schedule.bin        warmup_steps, total_steps, min_lr, and "<style>/lrs",
                           "<style>/step_losses", "<style>/grad_norms" for cosine and linear.

The batch is cut from a token stream of 2T+1 tokens the way loom's data loader cuts samples
(sample k = stream[kT : kT + T + 1]), so a trainer reading that stream as a shard, unshuffled,
sees exactly this batch every step.

Run with the system Python (Debian python3-torch 1.13):
    /usr/bin/python3 tools/gen_model_fixture.py            # rewrite tests/fixtures/model/
    /usr/bin/python3 tools/gen_model_fixture.py --check    # regenerate, compare, write nothing
"""

import argparse
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_op_fixtures import Fixture  # noqa: E402  (the LOOMFIX1 writer, shared with ops)

SEED = 20241128
LLMC_MAGIC = 20240326
LOOM_MAGIC = 20241128

B, T = 2, 8
STEPS = 10
TRAIN = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0)

GPT2 = dict(family=0, layers=2, heads=4, kv_heads=4, hidden=32, ffn_hidden=128, vocab=64,
            padded_vocab=128, max_seq=16, tied=1, norm_eps=1e-5, rope_theta=10000.0)
LLAMA = dict(family=1, layers=2, heads=4, kv_heads=2, hidden=32, ffn_hidden=48, vocab=64,
             padded_vocab=128, max_seq=16, tied=0, norm_eps=1e-5, rope_theta=10000.0)


def f32(x):
    """Rounds a Python float to the float32 the C++ side will hold."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ---- parameters, in ParamLayout::ForGpt order (model/param_layout.cc) ------------------------

def param_specs(cfg):
    """[(name, shape, kind)] with kind one of 'w' (2-D weight, decayed), 'norm', 'bias'."""
    C, F_, Vp, L = cfg["hidden"], cfg["ffn_hidden"], cfg["padded_vocab"], cfg["layers"]
    hd = C // cfg["heads"]
    llama = cfg["family"] == 1
    specs = [("wte.weight", (Vp, C), "w")]
    if not llama:
        specs.append(("wpe.weight", (cfg["max_seq"], C), "w"))
    for i in range(L):
        p = "blocks.%d." % i
        if llama:
            qkv = (cfg["heads"] + 2 * cfg["kv_heads"]) * hd
            specs += [(p + "attn_norm.weight", (C,), "norm"),
                      (p + "attn.qkv.weight", (qkv, C), "w"),
                      (p + "attn.proj.weight", (C, C), "w"),
                      (p + "mlp_norm.weight", (C,), "norm"),
                      (p + "mlp.gate_up.weight", (2 * F_, C), "w"),
                      (p + "mlp.down.weight", (C, F_), "w")]
        else:
            specs += [(p + "ln1.weight", (C,), "norm"), (p + "ln1.bias", (C,), "bias"),
                      (p + "attn.qkv.weight", (3 * C, C), "w"),
                      (p + "attn.qkv.bias", (3 * C,), "bias"),
                      (p + "attn.proj.weight", (C, C), "w"),
                      (p + "attn.proj.bias", (C,), "bias"),
                      (p + "ln2.weight", (C,), "norm"), (p + "ln2.bias", (C,), "bias"),
                      (p + "mlp.fc.weight", (F_, C), "w"), (p + "mlp.fc.bias", (F_,), "bias"),
                      (p + "mlp.proj.weight", (C, F_), "w"),
                      (p + "mlp.proj.bias", (C,), "bias")]
    if llama:
        specs.append(("final_norm.weight", (C,), "norm"))
    else:
        specs += [("ln_f.weight", (C,), "norm"), ("ln_f.bias", (C,), "bias")]
    if not cfg["tied"]:
        specs.append(("lm_head.weight", (Vp, C), "w"))
    return specs


def random_params(cfg, gen):
    """Float32 draws promoted to float64. Larger than a real init (std 0.02) so that every
    nonlinearity is exercised and the loss is not just ln(vocab); norm weights near 1 and
    biases near 0 but not equal to them, so their gradients matter too."""
    params = {}
    for name, shape, kind in param_specs(cfg):
        r = torch.randn(*shape, generator=gen, dtype=torch.float32)
        if kind == "w":
            t = r * (0.3 if name in ("wte.weight", "lm_head.weight") else 0.15)
            if name in ("wte.weight", "lm_head.weight"):
                t[cfg["vocab"]:] = 0  # padded rows stay zero
        elif kind == "norm":
            t = 1.0 + 0.1 * r
        else:
            t = 0.05 * r
        params[name] = t.double().requires_grad_(True)
    return params


# ---- the models ----------------------------------------------------------------------------

def layernorm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as loom and PyTorch
    return (x - mean) / torch.sqrt(var + eps) * w + b


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


# Per-token positions [B, T] (None: 0..T-1 in every row). gen_sft_fixture.py sets them for packed
# samples whose positions restart at each document (data.reset_position_ids).
POSITIONS = None


def rope(x, theta):
    """x: [B, H, T, HD]; rotates pairs (i, i + HD/2) by pos * theta^(-2i/HD)."""
    hd = x.shape[-1]
    half = hd // 2
    i = torch.arange(half, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / hd)
    if POSITIONS is not None:
        ang = POSITIONS.to(torch.float64)[:, None, :, None] * inv_freq  # [B, 1, T, half]
    else:
        ang = torch.arange(x.shape[2], dtype=torch.float64)[:, None] * inv_freq[None, :]  # [T, half]
    cos, sin = torch.cos(ang), torch.sin(ang)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def causal_attention(q, k, v):
    """q: [B, NH, T, HD]; k, v: [B, NKV, T, HD]; query head h reads kv head h // (NH/NKV)."""
    nh, nkv, hd, t = q.shape[1], k.shape[1], q.shape[-1], q.shape[2]
    group = nh // nkv
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v  # [B, NH, T, HD]


def forward(cfg, p, tokens):
    """Returns logits [B*T, Vp]."""
    llama = cfg["family"] == 1
    C, nh, nkv, eps = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["norm_eps"]
    hd = C // nh
    bsz, t = tokens.shape
    x = p["wte.weight"][tokens]
    if not llama:
        x = x + (p["wpe.weight"][POSITIONS] if POSITIONS is not None else p["wpe.weight"][:t][None])
    for l in range(cfg["layers"]):
        pre = "blocks.%d." % l
        if llama:
            h = rmsnorm(x, p[pre + "attn_norm.weight"], eps)
            qkv = h @ p[pre + "attn.qkv.weight"].T
        else:
            h = layernorm(x, p[pre + "ln1.weight"], p[pre + "ln1.bias"], eps)
            qkv = h @ p[pre + "attn.qkv.weight"].T + p[pre + "attn.qkv.bias"]
        q = qkv[..., :nh * hd].reshape(bsz, t, nh, hd).transpose(1, 2)
        k = qkv[..., nh * hd:(nh + nkv) * hd].reshape(bsz, t, nkv, hd).transpose(1, 2)
        v = qkv[..., (nh + nkv) * hd:].reshape(bsz, t, nkv, hd).transpose(1, 2)
        if llama:
            q, k = rope(q, cfg["rope_theta"]), rope(k, cfg["rope_theta"])
        y = causal_attention(q, k, v).transpose(1, 2).reshape(bsz, t, nh * hd)
        if llama:
            x = x + y @ p[pre + "attn.proj.weight"].T
            h = rmsnorm(x, p[pre + "mlp_norm.weight"], eps)
            gu = h @ p[pre + "mlp.gate_up.weight"].T
            f = cfg["ffn_hidden"]
            x = x + (F.silu(gu[..., :f]) * gu[..., f:]) @ p[pre + "mlp.down.weight"].T
        else:
            x = x + y @ p[pre + "attn.proj.weight"].T + p[pre + "attn.proj.bias"]
            h = layernorm(x, p[pre + "ln2.weight"], p[pre + "ln2.bias"], eps)
            a = gelu_tanh(h @ p[pre + "mlp.fc.weight"].T + p[pre + "mlp.fc.bias"])
            x = x + a @ p[pre + "mlp.proj.weight"].T + p[pre + "mlp.proj.bias"]
    if llama:
        x = rmsnorm(x, p["final_norm.weight"], eps)
    else:
        x = layernorm(x, p["ln_f.weight"], p["ln_f.bias"], eps)
    head = p["wte.weight"] if cfg["tied"] else p["lm_head.weight"]
    return (x @ head.T).reshape(bsz * t, -1)


def loss_of(cfg, logits, targets):
    # Columns >= vocab are padding: not part of the softmax (loom's cross-entropy valid_vocab).
    return F.cross_entropy(logits[:, :cfg["vocab"]], targets.reshape(-1))


# ---- model files (model/model_file.cc) -----------------------------------------------------

LLMC_ORDER = ["wte.weight", "wpe.weight", "ln1.weight", "ln1.bias", "attn.qkv.weight",
              "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "ln2.weight", "ln2.bias",
              "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias", "ln_f.weight",
              "ln_f.bias"]
GLOBAL = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"}


def header(values):
    h = list(values) + [0] * (256 - len(values))
    return struct.pack("<256i", *h)


def bf16_bits(t):
    """Round-to-nearest-even bf16 bit patterns of a float32 tensor (as torch's .bfloat16())."""
    return t.to(torch.float32).to(torch.bfloat16).view(torch.int16).reshape(-1).tolist()


def llmc_file(cfg, params32, bf16):
    """llm.c GPT-2 model file: int32[256] header (magic, version 3 fp32 / 5 bf16, maxT, V, L,
    NH, C, Vp), then each tensor in llm.c's order, per-layer tensors stacked over layers."""
    out = bytearray(header([LLMC_MAGIC, 5 if bf16 else 3, cfg["max_seq"], cfg["vocab"],
                            cfg["layers"], cfg["heads"], cfg["hidden"], cfg["padded_vocab"]]))
    for suffix in LLMC_ORDER:
        names = [suffix] if suffix in GLOBAL else \
            ["blocks.%d.%s" % (l, suffix) for l in range(cfg["layers"])]
        for n in names:
            t = params32[n].reshape(-1)
            if bf16:
                out += struct.pack("<%dh" % t.numel(), *bf16_bits(t))
            else:
                out += struct.pack("<%df" % t.numel(), *t.tolist())
    return bytes(out)


def loom_file(cfg, params32):
    """loom model file: int32[256] header (magic 20241128, version 1, family, L, NH, NKV, C, F,
    V, Vp, maxT, tied, dtype 0 = f32, norm_eps and rope_theta as float32 bits), then every
    parameter as f32 in ParamLayout order."""
    bits = lambda x: struct.unpack("<i", struct.pack("<f", x))[0]  # noqa: E731
    out = bytearray(header([LOOM_MAGIC, 1, cfg["family"], cfg["layers"], cfg["heads"],
                            cfg["kv_heads"], cfg["hidden"], cfg["ffn_hidden"], cfg["vocab"],
                            cfg["padded_vocab"], cfg["max_seq"], cfg["tied"], 0,
                            bits(cfg["norm_eps"]), bits(cfg["rope_theta"])]))
    for name, _, _ in param_specs(cfg):
        t = params32[name].reshape(-1)
        out += struct.pack("<%df" % t.numel(), *t.tolist())
    return bytes(out)


# ---- one family ----------------------------------------------------------------------------

SCHEDULE = dict(warmup_steps=3, total_steps=STEPS, min_lr=3e-4)


def scheduler_for(opt, style):
    """loom's schedule (train/lr_schedule.h) from PyTorch's schedulers: step s (0-based) of
    the warm-up uses lr * (s + 1) / W, then cosine or linear decay to min_lr over
    total_steps - W steps."""
    w, total = SCHEDULE["warmup_steps"], SCHEDULE["total_steps"]
    sched = torch.optim.lr_scheduler
    warm = sched.LinearLR(opt, start_factor=1.0 / w, end_factor=1.0, total_iters=w - 1)
    if style == "cosine":
        decay = sched.CosineAnnealingLR(opt, T_max=total - w, eta_min=SCHEDULE["min_lr"])
    else:
        decay = sched.LinearLR(opt, start_factor=1.0, end_factor=SCHEDULE["min_lr"] / TRAIN["lr"],
                               total_iters=total - w)
    return sched.SequentialLR(opt, [warm, decay], milestones=[w])


def closed_form_lr(style, s):
    """The same schedule written out, as a guard against the schedulers' semantics changing."""
    lr, min_lr, w = TRAIN["lr"], SCHEDULE["min_lr"], SCHEDULE["warmup_steps"]
    if s < w:
        return lr * (s + 1) / w
    p = min(1.0, (s - w) / (SCHEDULE["total_steps"] - w))
    if style == "cosine":
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))
    return lr + (min_lr - lr) * p


def train(cfg, params, tokens, targets, style=None):
    """STEPS training steps on one batch as trainer.cc Step() does them; constant lr, or the
    schedule `style`. Returns the losses, gradient norms and rates."""
    specs = param_specs(cfg)
    ordered = [params[n] for n, _, _ in specs]
    decay = [params[n] for n, _, k in specs if k == "w"]
    no_decay = [params[n] for n, _, k in specs if k != "w"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]),
                            eps=TRAIN["eps"])
    sched = scheduler_for(opt, style) if style else None
    losses, norms, lrs = [], [], []
    for step in range(STEPS):
        lrs.append(opt.param_groups[0]["lr"])
        if style:
            assert abs(lrs[-1] - closed_form_lr(style, step)) <= 1e-12 * TRAIN["lr"], (style, step)
        opt.zero_grad(set_to_none=False)
        step_loss = loss_of(cfg, forward(cfg, params, tokens), targets)
        step_loss.backward()
        norm = math.sqrt(sum(float((t.grad * t.grad).sum()) for t in ordered))
        if norm > TRAIN["grad_clip"]:
            for t in ordered:
                t.grad.mul_(TRAIN["grad_clip"] / norm)
        opt.step()
        if sched:
            sched.step()
        losses.append(step_loss.item())
        norms.append(norm)
    return losses, norms, lrs


def schedule_fixture(name, cfg, params32, tokens, targets):
    fx = Fixture(name + "_schedule")
    fx.i32("warmup_steps", SCHEDULE["warmup_steps"])
    fx.i32("total_steps", SCHEDULE["total_steps"])
    fx.f32("min_lr", f32(SCHEDULE["min_lr"]))
    for style in ("cosine", "linear"):
        params = {n: t.to(torch.float64).requires_grad_(True) for n, t in params32.items()}
        losses, norms, lrs = train(cfg, params, tokens, targets, style)
        fx.f32(style + "/lrs", torch.tensor(lrs))
        fx.f32(style + "/step_losses", torch.tensor(losses))
        fx.f32(style + "/grad_norms", torch.tensor(norms))
        print("%s %s schedule: lr %s, steps %s" %
              (name, style, " ".join("%.2e" % v for v in lrs),
               " ".join("%.4f" % v for v in losses)))
    return fx.encode()

def build(name, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    params = random_params(cfg, gen)
    params32 = {n: t.detach().to(torch.float32) for n, t in params.items()}
    stream = torch.randint(0, cfg["vocab"], (B * T + 1,), generator=gen, dtype=torch.int64)
    tokens = torch.stack([stream[b * T:b * T + T] for b in range(B)])
    targets = torch.stack([stream[b * T + 1:b * T + T + 1] for b in range(B)])

    fx = Fixture(name)
    for key in ("family", "layers", "heads", "kv_heads", "hidden", "ffn_hidden", "vocab",
                "padded_vocab", "max_seq", "tied"):
        fx.i32(key, cfg[key])
    fx.f32("norm_eps", f32(cfg["norm_eps"]))
    fx.f32("rope_theta", f32(cfg["rope_theta"]))
    for key, val in TRAIN.items():
        fx.f32(key, f32(val))
    fx.i32("stream", stream)
    fx.i32("tokens", tokens)
    fx.i32("targets", targets)
    specs = param_specs(cfg)
    for pname, _, _ in specs:
        fx.f32("param/" + pname, params32[pname])

    logits = forward(cfg, params, tokens)
    loss = loss_of(cfg, logits, targets)
    loss.backward()
    fx.f32("logits", logits)
    fx.f32("loss", loss.item())
    for pname, _, _ in specs:
        fx.f32("grad/" + pname, params[pname].grad)

    # Training: the same batch every step, as trainer.cc Step() (weights continue in float64).
    losses, norms, _ = train(cfg, params, tokens, targets)
    fx.f32("step_losses", torch.tensor(losses))
    fx.f32("grad_norms", torch.tensor(norms))
    print("%s: loss %.6f, steps %s, grad norms %s" %
          (name, loss.item(), " ".join("%.4f" % v for v in losses),
           " ".join("%.3f" % v for v in norms)))

    files = {name + ".bin": fx.encode()}
    if cfg["family"] == 0:
        files["gpt2.llmc.bin"] = llmc_file(cfg, params32, bf16=False)
        files["gpt2.llmc_bf16.bin"] = llmc_file(cfg, params32, bf16=True)
        files["gpt2_schedule.bin"] = schedule_fixture(name, cfg, params32, tokens, targets)
    else:
        files["llama.loom.bin"] = loom_file(cfg, params32)
    return files


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "model"))
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and report files that would change")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    files = {}
    files.update(build("gpt2", GPT2, SEED))
    files.update(build("llama", LLAMA, SEED + 1))
    os.makedirs(args.out, exist_ok=True)
    changed, total = [], 0
    for fname, data in sorted(files.items()):
        total += len(data)
        path = os.path.join(args.out, fname)
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old != data:
            changed.append(fname)
            if not args.check:
                with open(path, "wb") as f:
                    f.write(data)
    print("%d files, %d bytes, torch %s; %s: %s" %
          (len(files), total, torch.__version__, "would change" if args.check else "written",
           ", ".join(changed) or "none"))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
